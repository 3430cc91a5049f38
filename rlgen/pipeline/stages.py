"""Run one stage, and the ``stage.json`` record that says whether its output is current.

``stage.json`` sits in the stage's output directory: the stage id, kind, the hash of its resolved
config and upstream hashes, the config itself, and ``status`` (``running`` while it works, ``done``
when its output is complete). A stage is *up to date* when the record says ``done`` with the hash
the current study gives it. A ``running`` record with the same hash is an interrupted run: running
the stage again continues it (PPO, collection and offline training resume from their checkpoints;
evaluation, subsets and the report are redone). A record with another hash means the config (or
something upstream) changed: the directory is emptied and the stage recomputed. A report written
while some evaluations had failed is recorded ``incomplete`` and redone by the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from rlgen.atomic_files import write_json_atomic
from rlgen.errors import RlgenError, TrainingInterrupted
from rlgen.pipeline.plan import Stage

RECORD = "stage.json"


def read_record(directory: str | Path) -> dict[str, Any] | None:
    p = Path(directory) / RECORD
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None  # a torn record: treat the stage as not done


def _write_record(stage: Stage, status: str, **extra: Any) -> None:
    d = Path(stage.dir)
    d.mkdir(parents=True, exist_ok=True)
    record = {"id": stage.id, "kind": stage.kind, "hash": stage.hash, "status": status, "deps": list(stage.deps), "config": stage.config,
              "time": time.time(), **extra}  # fmt: skip
    write_json_atomic(d / RECORD, json.loads(json.dumps(record, default=str)))


def stage_state(stage: Stage) -> str:
    """``done`` (output current), ``partial`` (interrupted, same config), ``changed`` (output of
    another config), ``new`` (nothing there yet)."""
    if stage.kind == "external":
        return "done"
    record = read_record(stage.dir)
    if record is None:
        return "partial" if Path(stage.dir).is_dir() and any(Path(stage.dir).iterdir()) else "new"
    if record.get("hash") != stage.hash:
        return "changed"
    return "done" if record.get("status") == "done" else "partial"


def execute(stage: Stage, progress: bool = True) -> dict[str, Any]:
    """Run ``stage`` to completion (continuing an interrupted run) and mark it done.

    Returns a small summary (seconds, and what the stage made). Raises what the stage raises.
    """
    state = stage_state(stage)
    if state == "changed":
        # The directory holds the output of an older config: start over.
        shutil.rmtree(stage.dir)
    _write_record(stage, "running", started=time.time())
    t0 = time.perf_counter()
    info = _RUNNERS[stage.kind](stage, progress)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["resumed"] = state == "partial"
    # A report written without some evaluations (they failed) is redone by the next run.
    _write_record(stage, "incomplete" if info.get("missing") else "done", info=info)
    return info


def log_path(log_dir: Path, stage: Stage) -> Path:
    """Where a worker process or Ray task writes a stage's output."""
    return log_dir / (stage.id.replace("/", "__") + ".log")


def error_line(e: BaseException) -> str:
    """One line for the summary: the exception type and the first line of its message."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def execute_safely(stage_data: dict[str, Any], progress: bool, threads: int | None, log: str | None) -> dict[str, Any]:
    """``execute`` for worker processes and Ray tasks: never raises; returns ``{"ok": True, "info": ...}``
    or ``{"ok": False, "error": one line, "traceback": ...}``. ``threads`` sets torch's intra-op
    threads (the stage's share of the cores); ``log`` sends the stage's stdout and stderr to a file."""
    stage = Stage.from_dict(stage_data)
    saved: list[int] = []
    try:
        if log is not None:
            saved = _redirect_output(Path(log))
        if threads is not None:
            import torch

            torch.set_num_threads(max(1, threads))
        return {"ok": True, "info": execute(stage, progress=progress)}
    except BaseException as e:  # noqa: BLE001 - a worker reports every failure, Ctrl-C included
        return {"ok": False, "error": error_line(e), "traceback": traceback.format_exc(), "interrupted": _is_interrupt(e)}
    finally:
        if saved:
            _restore_output(saved)


def _is_interrupt(e: BaseException) -> bool:
    return isinstance(e, (KeyboardInterrupt, TrainingInterrupted))


def _redirect_output(path: Path) -> list[int]:
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)  # never append through a planted symlink
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


def _restore_output(saved: list[int]) -> None:
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    for fd in saved:
        os.close(fd)


# --- the stage kinds -----------------------------------------------------------------------------


def _run_ppo(stage: Stage, progress: bool) -> dict[str, Any]:
    """The study's online algorithm (``ppo.algo``), through the registry: its schema, its trainer."""
    from rlgen.agents import get_algorithm
    from rlgen.agents.run_dir import ensure_run_id, read_ladder
    from rlgen.config import validate_config

    algorithm = get_algorithm(stage.config.get("algo", "ppo"), source=stage.id)
    cfg = validate_config(stage.config, algorithm.schema, source=stage.id)
    if "progress" in type(cfg).model_fields:  # a registered algorithm's schema may have no progress switch
        cfg.progress = progress
    ensure_run_id(cfg.out_dir, study=stage.study)  # the run's study label, before its trainer writes anything
    run = algorithm.trainer()(cfg)
    rungs = read_ladder(run)["rungs"]
    final = max(rungs, key=lambda r: r["step"]) if rungs else {}
    return {"env_steps": getattr(cfg, "total_steps", None), "final_train_return": final.get("mean_return")}


def _dataset_info(path: Path) -> dict[str, Any]:
    from rlgen.data import load_dataset

    info = load_dataset(path).describe()
    return {"episodes": info["episodes"], "transitions": info["transitions"], "levels": info["levels"], "mean_return": info["mean_return"]}


def _run_collect(stage: Stage, progress: bool) -> dict[str, Any]:
    from rlgen.collect import collect
    from rlgen.config import CollectConfig, validate_config

    cfg = validate_config(stage.config, CollectConfig, source=stage.id)
    cfg.progress = progress
    return _dataset_info(collect(cfg))


def _run_subset(stage: Stage, progress: bool) -> dict[str, Any]:
    from rlgen.data import load_dataset
    from rlgen.data.format import MANIFEST

    c = stage.config
    out = Path(stage.dir)
    if (out / MANIFEST).exists():  # an interrupted earlier attempt: cheap to redo
        (out / MANIFEST).unlink()
    load_dataset(c["parent"]).subset(transitions=c["transitions"], seed=c["seed"]).save_subset(out)
    return _dataset_info(out)


def _run_offline(stage: Stage, progress: bool) -> dict[str, Any]:
    from rlgen.agents import get_algorithm
    from rlgen.agents.run_dir import ensure_run_id
    from rlgen.config import validate_config

    algorithm = get_algorithm(stage.config.get("algo"), source=stage.id)
    cfg = validate_config(stage.config, algorithm.schema, source=stage.id)
    if "progress" in type(cfg).model_fields:  # a registered algorithm's schema may have no progress switch
        cfg.progress = progress
    ensure_run_id(cfg.out_dir, study=stage.study)  # the run's study label, before its trainer writes anything
    for seed in getattr(cfg, "seeds", None) or []:  # a seed group: each member is a run with the label too
        ensure_run_id(Path(cfg.out_dir) / f"seed_{seed}", study=stage.study)
    algorithm.trainer()(cfg)
    return {"gradient_steps": cfg.steps}


def study_split(env: str, split: dict[str, Any], first_levels: int | None = None) -> Any:
    """The LevelSplit of ``env`` under a study's ``split`` section (duplicate check included when
    asked for); with ``first_levels``, training levels narrowed to the first N (a dataset collected
    on fewer levels is evaluated on exactly the levels it saw)."""
    from rlgen.config import RlgenConfig, validate_config

    s = validate_config({"env": env, "split": split}, RlgenConfig).level_split()
    return s if first_levels is None else s.with_train(s.train.first(first_levels))


def _num_actions(split: Any) -> int:
    from rlgen.envs import make_env

    probe = make_env(split, "train", num_envs=1, levels=[split.train.min])
    try:
        return int(probe.single_action_space.n)
    finally:
        probe.close()


def _run_evaluate(stage: Stage, progress: bool) -> dict[str, Any]:
    from rlgen.agents import load_agent
    from rlgen.pipeline.evaluate_run import adopt_old_run, evaluate_and_record, random_candidate, run_candidates

    c = stage.config
    split = study_split(c["env"], c["split"], first_levels=c["first_levels"])
    study, label = c["row"]["study"], c["row"]["agent"]
    if c["agent"] == "random":
        candidate = random_candidate(split, _num_actions(split), c["seed"], study=study, label=label)
    else:
        run = load_agent(c["run_dir"], device=c["device"])
        adopt_old_run(run)
        # the run's own study label (run.json) wins; the study's name labels runs whose record has none
        (candidate,) = run_candidates(run, study=study, label=label, split=split)
    out = Path(stage.dir) / "results.jsonl"
    recorded = evaluate_and_record([candidate], split, c["which"], out, episodes=c["episodes"], seed=c["seed"], num_envs=c["num_envs"],
                                   deterministic=c["deterministic"], replace=False, row_extra={"stage": stage.id})  # fmt: skip
    rows = recorded.rows
    return {"results": str(out), **{f"mean_{r['which']}": r["mean_normalized"] if r["mean_normalized"] is not None else r["mean_return"] for r in rows}}


def _run_report(stage: Stage, progress: bool) -> dict[str, Any]:
    from rlgen.report import make_report

    # The scheduler runs the report once every evaluation has finished or failed. Report on the
    # evaluations that are current: done, with the hash this study gives them (a failed upstream
    # can leave an older config's results in place).
    present, missing = [], []
    for item in stage.config["results"]:
        record = read_record(Path(item["file"]).parent)
        current = record is not None and record.get("status") == "done" and record.get("hash") == item["stage_hash"]
        (present if current and Path(item["file"]).is_file() else missing).append(item["file"])
    if not present:
        raise RlgenError("no evaluation results to report on")
    report = make_report(present, out_dir=stage.dir, seed=stage.config["seed"])
    return {"report": str(report.path), "missing": missing}


_RUNNERS = {
    "ppo": _run_ppo,
    "collect": _run_collect,
    "subset": _run_subset,
    "offline": _run_offline,
    "evaluate": _run_evaluate,
    "report": _run_report,
}
