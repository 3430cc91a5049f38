"""The run directories of the JAX offline agents: one per seed, grouped when several seeds train together.

With ``seeds: [0, 1, 2, 3, 4]`` the ``out_dir`` is a *seed group* (``rlgen.agents.run_dir.GROUP``)::

    <out_dir>/
      group.json                the members (seed -> directory), the seeds and the group's config
      checkpoints/state.json    the commit: updates done by every seed, finished, evaluation history
      .lock                     one trainer at a time (rlgen.agents.run_dir.locks_run_dir)
      seed_<s>/                 seed s's own run directory: config.yaml (seed: s), run.json (its run id),
        checkpoints/step_<N>.msgpack   its resumable state after N updates (params, targets, optimizer, key)
        checkpoints/latest.json        which step file is committed
        model.msgpack           its final model (weights only), once finished
        tb/                     its TensorBoard curves;  results.jsonl: its `rlgen evaluate` rows

Without ``seeds`` the ``out_dir`` is the one seed's run directory itself (the layout of ``seed_<s>/`` plus
``checkpoints/state.json``). A checkpoint is committed in three moves, each atomic: every seed's
``step_N.msgpack``, then the group's ``state.json``, then each seed's ``latest.json``, and only then are
older step files removed; a kill between any two leaves a complete committed step that resuming (or
loading a seed) finds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rlgen.agents.offline_jax.agent import JaxOfflineAgent
from rlgen.agents.run_dir import GROUP, inside_run_dir, read_json, read_state
from rlgen.atomic_files import write_json_atomic
from rlgen.errors import RlgenError

GROUP_FORMAT = "rlgen.seed_group/1"
COMMIT = "checkpoints/state.json"
POINTER = "checkpoints/latest.json"
MODEL_FILE = "model.msgpack"


def step_file(step: int) -> str:
    return f"checkpoints/step_{int(step):010d}.msgpack"


def members_of(out_dir: Path, seeds: list[int], grouped: bool) -> dict[int, Path]:
    """seed -> its run directory: ``seed_<s>/`` inside a group, else ``out_dir`` itself (one seed)."""
    return {s: out_dir / f"seed_{s}" for s in seeds} if grouped else {seeds[0]: out_dir}


def write_group(out_dir: Path, algo: str, seeds: list[int], config: dict[str, Any]) -> None:
    write_json_atomic(out_dir / GROUP, {"format": GROUP_FORMAT, "algo": algo, "seeds": list(seeds),
                                        "members": {str(s): f"seed_{s}" for s in seeds}, "config": config})  # fmt: skip


def check_same_seeds(out_dir: Path, seeds: list[int], grouped: bool) -> None:
    """A group resumes with the seeds it was started with; one seed's run directory is not a group, and back."""
    path = out_dir / GROUP
    if path.is_file():
        saved = read_json(path).get("seeds")
        if not grouped or saved != seeds:
            raise RlgenError(f"{out_dir} holds a seed group of seeds {saved}; this config trains {seeds if grouped else 'one run (no seeds)'}: "
                             "use another out_dir, or delete the directory to start over")  # fmt: skip
    elif grouped and (out_dir / COMMIT).is_file():
        raise RlgenError(f"{out_dir} holds one run without `seeds`; this config trains the seed group {seeds}: use another out_dir")


def read_commit(out_dir: Path) -> dict[str, Any]:
    """The committed training state (``{}`` before the first checkpoint)."""
    state = read_state(out_dir, COMMIT)
    if state and not (isinstance(state.get("step"), int) and isinstance(state.get("finished"), bool)):
        raise RlgenError(f"{out_dir / COMMIT} is damaged (no integer step or finished flag); delete {out_dir / 'checkpoints'} to restart from step 0")
    return state


def commit(out_dir: Path, members: dict[int, Path], step: int, finished: bool, history: dict[str, list[dict[str, Any]]]) -> None:
    """Commit step ``step`` (every member's step file is written): the group state, then each member's pointer,
    then the removal of every other step file."""
    write_json_atomic(out_dir / COMMIT, {"step": int(step), "finished": bool(finished), "seeds": sorted(members), "eval_history": history,
                                         "time": time.time()})  # fmt: skip
    for member in members.values():
        write_json_atomic(member / POINTER, {"step": int(step), "file": step_file(step)})
        keep_only(member, step)


def keep_only(member: Path, step: int | None) -> None:
    """Remove the member's step files other than ``step``'s (all of them with None): leftovers of a later save a
    kill interrupted before its commit, or of commits that are superseded."""
    keep = Path(step_file(step)).name if step is not None else None
    for f in (member / "checkpoints").glob("step_*.msgpack"):
        if f.name != keep:
            f.unlink(missing_ok=True)
    for f in (member / "checkpoints").glob("step_*.msgpack.*.tmp"):  # an atomic write a kill interrupted
        f.unlink(missing_ok=True)


def load_run(run_dir: str | Path, checkpoint: str | None = None, device: str = "auto") -> JaxOfflineAgent:
    """One seed's agent: its final model, else its last committed checkpoint (or ``checkpoint``, a step file
    inside the run). Reads weights only; writes nothing; needs no dataset.

    Raises:
        RlgenError: a seed group (name a member), no model yet, or a damaged file (named).
    """
    from rlgen.devices import jax_device  # noqa: PLC0415

    run = Path(run_dir)
    if (run / GROUP).is_file():
        raise RlgenError(f"{run} is a group of seed runs; load one of them ({run}/seed_<s>), or evaluate them all with `rlgen evaluate {run}`")
    import jax  # noqa: PLC0415

    jax.config.update("jax_default_device", jax_device(device))  # also where the evaluation that follows runs
    if checkpoint is not None:
        return JaxOfflineAgent.load(inside_run_dir(run, checkpoint, "--checkpoint"), device=device)
    if (run / MODEL_FILE).is_file():
        return JaxOfflineAgent.load(run / MODEL_FILE, device=device)
    if (run / POINTER).is_file():
        pointer = read_json(run / POINTER)
        if not isinstance(pointer, dict):
            raise RlgenError(f"{run / POINTER}: expected an object with a `file`")
        return JaxOfflineAgent.load(inside_run_dir(run, pointer.get("file"), run / POINTER), device=device)
    raise RlgenError(f"{run} has no trained model yet (no {MODEL_FILE}, no committed checkpoint in {POINTER})")
