"""What a dataset *is*, for keying results: its name, skill, levels and size as collected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlgen.envs.levels import LevelSet

if TYPE_CHECKING:
    from rlgen.data.dataset import Dataset


def dataset_identity(ds: "Dataset") -> dict[str, Any]:
    """What a dataset *is*, for keying results: ``name``, ``skill``, ``levels`` (the number of
    training levels it was collected on, as asked), ``size`` (transitions asked for), and the
    measured ``transitions`` and ``distinct_levels``; ``train_levels`` is the level set (text spec)
    the data came from, so the agent is evaluated on "train" levels it actually saw.

    ``levels`` and ``size`` are the nominal values of the collection (or of the subset), not the
    measured ones: two seeds of one recipe hold a few transitions more or less, and a small dataset
    reaches fewer distinct levels by chance; keyed on measured values, the seeds of one experiment
    would land in different report rows.

    Args:
        ds: a dataset or a saved subset.
    """
    m = ds.manifest
    config = m.get("config") or {}
    subset = m.get("subset") or {}
    split = getattr(ds, "split", None)
    distinct = [int(x) for x in ds.levels]
    collected = LevelSet(split.train) if split is not None else LevelSet(distinct)
    if isinstance(config.get("levels"), int) and split is not None:
        collected = LevelSet(split.train).first(int(config["levels"]))
    if subset.get("levels") is not None:  # a subset chosen by levels holds exactly its episodes' levels
        collected = LevelSet(distinct)
    if subset.get("transitions") is not None:
        size = int(subset["transitions"])
    elif subset.get("episodes") is None and isinstance(config.get("transitions"), int):
        size = int(config["transitions"])
    else:  # collected (or subset) by episodes, or imported: the measured count is all there is
        size = int(ds.num_transitions)
    return {
        "name": str(ds.name),
        "skill": subset.get("skill") or m.get("skill"),
        "levels": len(collected),
        "size": size,
        "transitions": int(ds.num_transitions),
        "distinct_levels": len(distinct),
        "train_levels": str(collected),
    }
