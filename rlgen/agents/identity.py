"""Who a trained agent is, as the fields of its ``results.jsonl`` rows (``rlgen.evaluation.results.IDENTITY_FIELDS``).

``rlgen evaluate`` and the pipeline's evaluation stage both build rows from :func:`agent_identity`, so
their rows carry the same fields; evaluation receives them as data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlgen.agents.run_dir import read_run_id
from rlgen.data import dataset_identity, load_dataset
from rlgen.errors import RlgenError


def dataset_facts(resolved: dict[str, Any]) -> dict[str, Any] | None:
    """The ``rlgen.data.dataset_identity`` facts of an offline run's dataset, from its
    config's ``resolved.dataset`` block; None for runs without a dataset (PPO).

    Runs trained before those facts were recorded get them from the dataset when it is still at the
    recorded path; otherwise only the name and measured size are known.
    """
    d = resolved.get("dataset")
    if not isinstance(d, dict):
        return None
    if "size" in d:
        return d
    try:
        return {**d, **dataset_identity(load_dataset(d["path"]))}
    except (RlgenError, KeyError, OSError, TypeError, ValueError):
        return {"name": d.get("name"), "skill": None, "levels": None, "size": None, "transitions": d.get("transitions"),
                "distinct_levels": None, "train_levels": None}  # fmt: skip


def agent_identity(run_dir: str | Path, algo: str, config: Any, resolved: dict[str, Any], split: Any,
                   checkpoint: str | None = None, study: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Row fields naming a trained agent: run id, algorithm, env, training levels it is evaluated on,
    train seed, checkpoint (None: the final policy), study label, and its dataset's name, skill,
    levels and size (nominal, see ``dataset_identity``; None for online agents)."""
    facts = dataset_facts(resolved) or {}
    return {
        "run_id": read_run_id(run_dir),
        "algorithm": algo,
        "env": split.id,
        "train_levels": len(split.train),
        "train_seed": int(getattr(config, "seed", 0)),
        "checkpoint": checkpoint,
        "study": study,
        "dataset": facts.get("name"),
        "dataset_skill": facts.get("skill"),
        "dataset_levels": facts.get("levels"),
        "dataset_transitions": facts.get("size"),
        "dataset_transitions_measured": facts.get("transitions"),
        "dataset_distinct_levels": facts.get("distinct_levels"),
        "run": str(run_dir),
    }
