"""Who a trained agent is, as the fields of its ``results.jsonl`` rows (``rlgen.evaluation.results.IDENTITY_FIELDS``).

``rlgen evaluate`` and the pipeline's evaluation stage both build rows from :func:`agent_identity`, so
their rows carry the same fields; evaluation receives them as data. The identity has everything that makes
two runs the same experiment except their seed, so that the report never merges different experiments
and does merge the seeds of one:

* the run id and study label of ``run.json`` (properties of the run, whoever evaluates it);
* the algorithm, the env and a digest of the split it is evaluated on (options and level sets included);
* a digest of the run's config without its seed and without keys that change nothing it learns
  (:data:`NEUTRAL_CONFIG_KEYS`), and the settings behind it (the keys that differ from the defaults), so
  report labels can say how two agents differ;
* its dataset's skill, levels and size (the nominal recipe, see ``rlgen.data.dataset_identity``);
* how far training had got: the step of the evaluated model and whether the run had finished.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rlgen.agents.run_dir import LADDER, config_dict, inside_run_dir, read_ladder, read_run_record, read_state
from rlgen.data import dataset_identity, load_dataset
from rlgen.errors import RlgenError
from rlgen.evaluation.results import digest, split_facts

#: Config keys that do not change what a run learns: where it writes, what it is called, how it shows
#: progress, where it runs, how often it checkpoints, how many evaluation episodes run at once, and the
#: dataset's path (the dataset is identified by its recipe instead: each seed of a study trains on its own
#: copy), the loggers and how DT/BCT chunk their encoder (memory, not what they learn). Left out of the config digest
#: together with ``seed``.
NEUTRAL_CONFIG_KEYS = ("seed", "name", "out_dir", "progress", "device", "checkpoint_every", "eval_num_envs", "dataset", "logger", "wandb",
                       "encoder_chunk")


@dataclasses.dataclass(frozen=True)
class TrainingProgress:
    """How far a run's training had got when its model was loaded.

    Attributes:
        step: training steps of the loaded model (env steps online, gradient steps offline); None: unknown.
        finished: whether the run had finished training (None: unknown, e.g. a run without a state file).
        total: the steps its config asks for.
        stopped_early: offline runs stopped by early stopping (finished before ``total``).
    """

    step: int | None
    finished: bool | None
    total: int | None = None
    stopped_early: bool = False


def online_progress(run_dir: str | Path, checkpoint: str | None, total: int | None = None) -> TrainingProgress:
    """The progress of an online run (the run-directory protocol: ``checkpoints/state.json`` with
    ``num_timesteps`` and ``finished``; ladder rungs with their ``step``): the step of the rung loaded (the
    last one, or the rung whose checkpoint is ``checkpoint``), else of the resumable checkpoint."""
    run = Path(run_dir)
    try:
        state = read_state(run, "checkpoints/state.json")
        rungs = read_ladder(run)["rungs"] if (run / LADDER).is_file() else []
    except RlgenError:
        return TrainingProgress(None, None, total)
    finished = state.get("finished") if isinstance(state.get("finished"), bool) else None
    steps = state.get("num_timesteps") if isinstance(state.get("num_timesteps"), int) else None
    if checkpoint is not None:
        target = inside_run_dir(run, checkpoint, "checkpoint")
        steps = next((r["step"] for r in rungs if inside_run_dir(run, r["checkpoint"], run / LADDER) == target), None)
    elif rungs:
        steps = max(r["step"] for r in rungs)
    return TrainingProgress(steps, finished, total)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def config_settings(config: Any) -> dict[str, Any]:
    """The run's config as flat ``key.sub: value`` pairs that differ from its schema's defaults, without
    ``seed``, :data:`NEUTRAL_CONFIG_KEYS` and ``env`` (the game: a field of its own): what its experiment set. Comparing with the defaults keeps the
    digest of a run the same when a later rlgen adds a key with a default."""
    values = _flatten(config_dict(config))
    try:
        defaults = _flatten(config_dict(type(config).model_construct()))
    except Exception:  # noqa: BLE001 - a schema whose defaults cannot be built: every key counts
        defaults = {}
    missing = object()
    # the game is the row's own field (`env`), not a setting: one agent's games share its config digest
    return {k: v for k, v in sorted(values.items()) if k.split(".")[0] not in (*NEUTRAL_CONFIG_KEYS, "env") and defaults.get(k, missing) != v}


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


def agent_identity(run_dir: str | Path, algo: str, config: Any, resolved: dict[str, Any], split: Any, checkpoint: str | None = None,
                   study: str | None = None, progress: TrainingProgress | None = None) -> dict[str, Any]:  # fmt: skip
    """Row fields naming a trained agent (see the module docstring): run id, algorithm, env, split digests,
    training levels it is evaluated on, train seed, config digest and settings, checkpoint (None: the final
    policy), study label (the run's own, from ``run.json``; ``study`` only for runs whose record has none),
    its dataset's name, skill, levels and size (None for online agents), and the model's training step and
    whether the run had finished."""
    record = read_run_record(run_dir)
    facts = dataset_facts(resolved) or {}
    settings = config_settings(config)
    return {
        "run_id": record["run_id"],
        "algorithm": algo,
        "env": split.id,
        **split_facts(split),
        "train_levels": len(split.train),
        "train_seed": int(getattr(config, "seed", 0)),
        "config_digest": digest([algo, settings]),
        "settings": settings,
        "checkpoint": checkpoint,
        "study": record["study"] if record["study"] is not None else study,
        "dataset": facts.get("name"),
        "dataset_skill": facts.get("skill"),
        "dataset_levels": facts.get("levels"),
        "dataset_transitions": facts.get("size"),
        "dataset_transitions_measured": facts.get("transitions"),
        "dataset_distinct_levels": facts.get("distinct_levels"),
        "step": progress.step if progress is not None else None,
        "finished": progress.finished if progress is not None else None,
        "run": str(run_dir),
    }
