"""The scheduler: run a study's stages in order of their dependencies, side by side where resources allow.

Three ways to run a stage, one scheduler:

* ``InlineExecutor`` (``workers: 1``): one stage at a time in this process, with the stages' own
  progress bars. No start-up cost per stage (importing torch, SB3 and d3rlpy takes seconds).
* ``LocalPoolExecutor`` (``runner: local``, the default): long-lived worker processes, one stage per
  process at a time. A stage starts when the cores it asks for (``resources.<kind>.num_cpus``,
  default 1) are free, and its torch threads are set to that number, so 2 cores run 2 one-thread
  stages and never oversubscribe. Each stage's output goes to ``<out_dir>/logs/<stage>.log``.
* ``RayExecutor`` (``runner: ray``): every stage a Ray task with ``num_cpus``/``num_gpus``;
  ``ray.address`` joins a cluster (whose nodes need rlgen installed and the study's ``out_dir`` on a
  shared file system) after checking within ``ray.connect_timeout_s`` that it answers; no address
  always starts a fresh local Ray (``address="local"``: never a cluster that an earlier ``ray start``
  recorded in Ray's temp dir), with its dashboard off.

A failed stage is reported and blocks only what depends on it; every other stage still runs.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait as wait_connections
from pathlib import Path
from typing import Any, Protocol

from rlgen.errors import StudyInterrupted
from rlgen.pipeline.plan import Stage
from rlgen.pipeline.stages import execute_safely, log_path, stage_state
from rlgen.pipeline.study import StudyConfig, local_cpus
from rlgen.progress import status_line

#: Seconds between "running: ..." lines when the output is not a terminal (no live status line).
HEARTBEAT_S = 60.0


@dataclasses.dataclass
class Outcome:
    """What happened to one stage in this run: ``up to date`` (skipped), ``done``, ``failed``,
    ``blocked`` (an upstream stage failed) or ``interrupted``."""

    stage: Stage
    status: str
    seconds: float | None = None
    error: str | None = None
    log: str | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("up to date", "done")


class Executor(Protocol):
    #: whether stages show their own progress bars (only when one runs at a time in this terminal)
    foreground: bool

    def fits(self, stage: Stage) -> bool: ...
    def start(self, stage: Stage) -> None: ...
    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]: ...
    def running(self) -> list[str]: ...
    def interrupt(self, from_terminal: bool) -> None: ...
    def close(self, force: bool = False) -> None: ...


# --- executors -----------------------------------------------------------------------------------


class InlineExecutor:
    """One stage at a time, in this process."""

    foreground = True

    def __init__(self) -> None:
        self._done: list[tuple[str, dict[str, Any]]] = []

    def fits(self, stage: Stage) -> bool:
        return not self._done

    def start(self, stage: Stage) -> None:
        result = execute_safely(stage.to_dict(), progress=True, threads=None, log=None)
        self._done.append((stage.id, result))
        if result.get("interrupted"):
            raise KeyboardInterrupt  # stop the study, as Ctrl-C would have

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        done, self._done = self._done, []
        return done

    def running(self) -> list[str]:
        return []

    def interrupt(self, from_terminal: bool) -> None:
        pass  # the stage runs in this process: the signal has reached it

    def close(self, force: bool = False) -> None:
        pass


def _worker_main(conn: Any) -> None:
    """A pool worker: run the stages the driver sends, one at a time, until told to stop."""
    # Idle workers ignore Ctrl-C (the driver decides); a running stage gets it and saves its checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        stage_data, threads, log = msg
        signal.signal(signal.SIGINT, signal.default_int_handler)
        result = execute_safely(stage_data, progress=False, threads=threads, log=log)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        conn.send(result)


@dataclasses.dataclass
class _Worker:
    process: Any
    conn: Any
    stage: Stage | None = None


class LocalPoolExecutor:
    """Long-lived spawned worker processes; a stage starts when its cores (and GPUs) are free."""

    foreground = False

    def __init__(self, log_dir: Path, cpus: int | None = None, max_workers: int | None = None) -> None:
        self.log_dir = log_dir
        self.cpus = cpus or local_cpus()
        self.max_workers = max_workers or self.cpus
        self.gpus: int | None = None
        self.workers: list[_Worker] = []
        self.started: dict[str, float] = {}
        self._ctx = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock

    def _gpu_count(self) -> int:
        if self.gpus is None:
            import torch

            self.gpus = torch.cuda.device_count()
        return self.gpus

    def _need(self, stage: Stage) -> tuple[float, float]:
        # A request above the machine's size is clamped, so it runs alone instead of never.
        gpus = min(stage.num_gpus, self._gpu_count()) if stage.num_gpus else 0.0
        return min(stage.num_cpus, self.cpus), gpus

    def _in_use(self) -> tuple[float, float]:
        needs = [self._need(w.stage) for w in self.workers if w.stage is not None]
        return sum(n[0] for n in needs), sum(n[1] for n in needs)

    def fits(self, stage: Stage) -> bool:
        busy = [w for w in self.workers if w.stage is not None]
        if len(busy) >= self.max_workers:
            return False
        cpu, gpu = self._in_use()
        need_cpu, need_gpu = self._need(stage)
        return cpu + need_cpu <= self.cpus + 1e-9 and (not need_gpu or gpu + need_gpu <= self._gpu_count() + 1e-9)

    def start(self, stage: Stage) -> None:
        worker = next((w for w in self.workers if w.stage is None), None)
        if worker is None:
            parent, child = self._ctx.Pipe()
            process = self._ctx.Process(target=_worker_main, args=(child,), name="rlgen-stage-worker")
            # Threads for numpy/OpenMP in the worker are set before it imports anything heavy;
            # torch's intra-op threads are set per stage.
            saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
            os.environ.update(dict.fromkeys(saved, "1"))
            try:
                process.start()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            child.close()
            worker = _Worker(process, parent)
            self.workers.append(worker)
        worker.stage = stage
        self.started[stage.id] = time.time()
        log = log_path(self.log_dir, stage)
        worker.conn.send((stage.to_dict(), max(1, int(self._need(stage)[0])), str(log)))

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        busy = [w for w in self.workers if w.stage is not None]
        if not busy:
            return []
        ready = wait_connections([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout)
        out = []
        for w in busy:
            assert w.stage is not None
            if w.conn in ready or w.conn.poll():
                try:
                    out.append((w.stage.id, w.conn.recv()))
                    w.stage = None
                    continue
                except (EOFError, OSError):
                    pass
            if w.process.sentinel in ready or not w.process.is_alive():
                w.process.join(timeout=1)
                code = w.process.exitcode
                out.append((w.stage.id, {"ok": False, "error": f"worker process died (exit code {code}); see its log", "interrupted": False}))
                w.stage = None
                self.workers.remove(w)
        return out

    def running(self) -> list[str]:
        return [w.stage.id for w in self.workers if w.stage is not None]

    def interrupt(self, from_terminal: bool) -> None:
        """Ask the running stages to stop (they save a checkpoint first). Ctrl-C in the terminal reaches
        the workers by itself (same process group); SIGTERM to this process does not."""
        if from_terminal:
            return
        for w in self.workers:
            if w.stage is not None and w.process.is_alive():
                os.kill(w.process.pid, signal.SIGINT)

    def close(self, force: bool = False) -> None:
        for w in self.workers:
            if force and w.process.is_alive():
                w.process.terminate()
            else:
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for w in self.workers:
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
        self.workers = []


def make_executor(study: StudyConfig, runner: str | None = None) -> Executor:
    log_dir = Path(study.out_dir) / "logs"
    kind = runner or study.runner
    if kind == "ray":
        from rlgen.pipeline.ray_scheduler import RayExecutor  # Ray is imported only for runner=ray

        return RayExecutor(log_dir, study.ray.address, study.ray.connect_timeout_s)
    if study.workers == 1:
        return InlineExecutor()
    return LocalPoolExecutor(log_dir, max_workers=None if study.workers == "auto" else int(study.workers))


# --- the scheduler -------------------------------------------------------------------------------


def run_stages(stages: list[Stage], executor: Executor, console: Any) -> list[Outcome]:
    """Run every stage that is not up to date, dependencies first; return one outcome per stage.

    Raises:
        StudyInterrupted: after Ctrl-C/SIGTERM, once the running stages have stopped.
    """
    outcomes: dict[str, Outcome] = {}
    todo: list[Stage] = []
    reason: dict[str, str] = {}
    for s in stages:
        state = stage_state(s)
        if state == "done":
            outcomes[s.id] = Outcome(s, "up to date")
        else:
            todo.append(s)
            reason[s.id] = {"new": "", "partial": " (continuing an interrupted run)", "changed": " (config changed: recomputing)"}[state]
    total = len(todo)
    console.print(f"{len(stages)} stages: {len(stages) - total} up to date, {total} to run")
    log_dir = getattr(executor, "log_dir", None)
    by_id = {s.id: s for s in stages}
    count = 0
    started_at: dict[str, float] = {}
    last_heartbeat = time.time()
    interrupted = False
    old_term = signal.signal(signal.SIGTERM, _raise_terminated)
    status = status_line(console, enabled=not executor.foreground)
    try:
        while todo or executor.running():
            started_any = False
            if not interrupted:
                for s in list(todo):
                    failed = [d for d in s.deps if d in outcomes and not outcomes[d].ok]
                    # The report is written from whatever evaluations succeeded; everything else needs all its inputs.
                    if failed and (s.kind != "report" or len(failed) == len(s.deps)):
                        outcomes[s.id] = Outcome(s, "blocked", error=f"needs {failed[0]}, which {outcomes[failed[0]].status}")
                        todo.remove(s)
                        continue
                    if all(d in outcomes for d in s.deps) and executor.fits(s):
                        todo.remove(s)
                        count += 1
                        if executor.foreground:
                            console.rule(f"[bold][{count}/{total}] {s.id}[/]{reason[s.id]}", align="left")
                        else:
                            console.print(f"[{count}/{total}] started {s.id}{reason[s.id]}")
                        started_at[s.id] = time.time()
                        started_any = True
                        executor.start(s)
            elif not executor.running():
                break
            try:
                finished = executor.wait(timeout=1.0)
            except KeyboardInterrupt as e:
                if interrupted:  # a second Ctrl-C: stop now
                    executor.close(force=True)
                    raise
                interrupted = True
                executor.interrupt(from_terminal=not isinstance(e, _Terminated))
                console.print("interrupted: waiting for the running stages to save their checkpoints (Ctrl-C again to kill them)")
                continue
            if todo and not finished and not started_any and not executor.running() and not interrupted:  # pragma: no cover - a bug
                raise RuntimeError(f"scheduler stuck: {todo[0].id} can never start (dependencies: {', '.join(todo[0].deps)})")
            for sid, result in finished:
                o = _outcome(by_id[sid], result, log_dir)
                outcomes[sid] = o
                interrupted = interrupted or o.status == "interrupted"
                console.print(_outcome_line(o))
            now = time.time()
            if status is not None:
                status.update("  |  ".join(_running_line(by_id[r], now - started_at.get(r, now)) for r in executor.running()))
            elif not executor.foreground and executor.running() and now - last_heartbeat > HEARTBEAT_S:
                # no live status line outside a terminal: say what is running now and then
                last_heartbeat = now
                console.print("  running: " + "  |  ".join(_running_line(by_id[r], now - started_at.get(r, now)) for r in executor.running()))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if status is not None:
            status.stop()
        signal.signal(signal.SIGTERM, old_term)
        executor.close(force=interrupted)
    for s in todo:
        outcomes.setdefault(s.id, Outcome(s, "interrupted" if interrupted else "blocked"))
    if interrupted:
        raise StudyInterrupted("stopped by Ctrl-C/SIGTERM; finished stages are kept and running ones saved checkpoints: run the same command again to continue")
    return [outcomes[s.id] for s in stages]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def _outcome(stage: Stage, result: dict[str, Any], log_dir: Path | None) -> Outcome:
    log = str(log_path(log_dir, stage)) if log_dir is not None else None
    if result.get("ok"):
        info = result.get("info", {})
        return Outcome(stage, "done", seconds=info.get("seconds"), info=info, log=log)
    status = "interrupted" if result.get("interrupted") else "failed"
    return Outcome(stage, status, error=result.get("error"), log=log, info={"traceback": result.get("traceback", "")})


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def _running_line(stage: Stage, elapsed: float) -> str:
    hint = progress_hint(stage)
    return f"{stage.id} {_clock(elapsed)}" + (f" ({hint})" if hint else "")


def progress_hint(stage: Stage) -> str:
    """How far a running stage is, read from the checkpoints it writes (coarse: as often as it
    checkpoints); empty when there is nothing to read yet."""
    import json

    d = Path(stage.dir)
    try:
        if stage.kind == "ppo":
            done = json.loads((d / "checkpoints/state.json").read_text())["num_timesteps"]
            return f"{done:,}/{stage.config['total_steps']:,} env steps"
        if stage.kind == "offline":  # the torch agents' checkpoint, else the JAX agents' commit (a seed group's too)
            torch_state = d / "checkpoints/latest/state.json"
            done = json.loads((torch_state if torch_state.is_file() else d / "checkpoints/state.json").read_text())["step"]
            return f"{done:,}/{stage.config['steps']:,} updates"
        if stage.kind == "collect":
            shards = len(list((d / "shards").glob("*.zst")))
            return f"{shards} shard(s) of {stage.config['shard_transitions']:,} transitions written" if shards else ""
    except (OSError, ValueError, KeyError):
        pass
    return ""


def _outcome_line(o: Outcome) -> str:
    if o.status == "done":
        facts = describe_info(o.stage.kind, o.info)
        return f"  done {o.stage.id} in {_clock(o.seconds or 0)}" + (f": {facts}" if facts else "")
    where = f" (log: {o.log})" if o.log else ""
    return f"  {o.status.upper()} {o.stage.id}: {o.error}{where}"


def describe_info(kind: str, info: dict[str, Any]) -> str:
    """A few facts about a finished stage, for its line in the terminal."""
    if kind == "ppo" and info.get("final_train_return") is not None:
        steps = f"{info['env_steps']:,} env steps, " if isinstance(info.get("env_steps"), int) else ""
        return f"{steps}final policy's return on training levels {info['final_train_return']:.3f}"
    if kind in ("collect", "subset"):
        return f"{info['episodes']:,} episodes, {info['transitions']:,} transitions on {info['levels']} levels, mean return {info['mean_return']:.3f}"
    if kind == "offline":
        return f"{info['gradient_steps']:,} gradient steps"
    if kind == "evaluate":
        return ", ".join(f"{k.removeprefix('mean_').replace('_', '-')} {v:.3f}" for k, v in info.items() if k.startswith("mean_") and v is not None)
    if kind == "report":
        missing = info.get("missing") or []
        return info["report"] + (f" (without {len(missing)} missing evaluation(s): re-run to complete it)" if missing else "")
    return ""
