"""The offline training loop: batches from the out-of-core sampler, updates, evaluation on training and
validation levels, checkpoints written as units, resume bit-identical to an uninterrupted run.

A run directory holds ``config.yaml``, ``checkpoints/latest/`` (model file, ``agent.json`` and
``state.json``: step, sampler and torch RNG states, agent counters, evaluation history) and, once finished,
``model/``; both directories are written as units (``rlgen.agents.run_dir.write_unit``), so resuming after
a kill continues bit for bit as if never stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlgen.agents.offline import CHECKPOINT_DIR, MODEL_DIR, OfflineAgent, build_agent
from rlgen.agents.offline_checkpoint import STATE, decode_bytes, encode_bytes, read_state
from rlgen.agents.inputs import RESUME_NEUTRAL_KEYS, check_batch_size, dataset_digest, same_dataset
from rlgen.agents.run_checks import HELD_OUT_CURVE
from rlgen.agents.run_dir import (
    CONFIG,
    interrupted,
    locks_run_dir,
    read_run_config,
    recover_unit,
    resume_preamble,
    stop_on_signals,
    tensorboard_writer,
    write_resolved_config,
    write_unit,
)
from rlgen.config import OfflineConfig
from rlgen.data import dataset_identity, load_dataset
from rlgen.devices import torch_device
from rlgen.envs import LevelSet, LevelSplit
from rlgen.errors import RlgenError
from rlgen.evaluation import evaluate_on_levels
from rlgen.progress import ProgressBar


@locks_run_dir  # one trainer per run directory: a second one gets a one-line error naming the first
def train_offline(cfg: OfflineConfig) -> Path:
    """Train (or resume) an offline agent as ``cfg`` says; returns the run directory.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, once the checkpoint is saved.
    """
    run_dir = Path(cfg.out_dir)
    ds = load_dataset(cfg.dataset, expect_env=cfg.env)
    ds.cache()  # every shard's sha256 is checked here, before anything is written: a refused dataset blocks no retry
    check_batch_size(cfg, ds.num_transitions)
    split = LevelSplit.from_dict(ds.manifest["split"]) if "split" in ds.manifest else cfg.level_split()
    facts = dataset_identity(ds)
    # "train" levels in evaluations during training are those the data came from, as in `rlgen evaluate`
    eval_split = split.with_train(LevelSet(facts["train_levels"])) if facts.get("train_levels") else split
    device = torch_device(cfg.device)
    best_return = float(ds.episodes["return"].max())
    target_return = cfg.dt_target_return if cfg.dt_target_return is not None else cfg.dt_target_return_scale * best_return
    checkpoint = run_dir / CHECKPOINT_DIR
    recover_unit(checkpoint)  # a kill mid-swap leaves the previous checkpoint under another name
    digest = dataset_digest(ds)
    resume = resume_preamble(run_dir, cfg, f"{CHECKPOINT_DIR}/{STATE}", f"{CHECKPOINT_DIR}/{STATE}", cfg.steps, steps_key="step",
                             ignore=RESUME_NEUTRAL_KEYS, read=lambda path: read_state(path.parent),
                             same={"dataset": same_dataset(cfg.dataset, digest)})  # fmt: skip
    # Finished means finished: a run that early stopping ended is done, whatever `steps` says now.
    done = resume.finished or (resume.resuming and _stopped_early(run_dir, resume.state))
    write_resolved_config(cfg, run_dir, extra={"split": split.to_dict(), "dataset": {"path": str(cfg.dataset), **facts,
                          "best_return": best_return, "digest": digest}, "dt_target_return": target_return,
                          "observation_shape": list(ds.observation_shape), "num_actions": ds.num_actions})  # fmt: skip
    agent = build_agent(cfg, ds.observation_shape, ds.num_actions, device, target_return)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    history: list[dict[str, Any]] = []
    if resume.resuming:
        agent.load_weights(checkpoint)
        step, history = _restore_training_state(checkpoint, resume.state, agent, rng)
        if done:
            if not (run_dir / MODEL_DIR / agent.MODEL_FILE).is_file():  # killed between the last checkpoint and model/
                write_unit(run_dir / MODEL_DIR, agent.save)
            return run_dir  # nothing left to do
    if device != "cpu":
        ds.to_device(device)
    windows = agent.episodic  # the sequence agents (DT, BCT) learn from trajectory windows
    tb = tensorboard_writer(run_dir / "tb", step if resume.resuming else None, cfg, run_dir)
    flag = {"stop": False}
    bar = ProgressBar(f"[bold]{cfg.algo.upper()}[/] {Path(cfg.dataset).name}", total=cfg.steps, completed=step,
                      fields={"rate": "updates/s", "loss": ""}, enabled=cfg.progress)  # fmt: skip
    t0, s0 = time.perf_counter(), step
    checkpoint_every = cfg.checkpoint_interval()  # at most a tenth of the run: a kill never loses more
    losses: dict[str, float] = {}
    stopped_early = False

    def save_checkpoint(finished: bool) -> None:
        """Model and counters as one unit: every RNG and counter the next updates depend on."""
        state = {"step": step, "rng": rng.bit_generator.state, "finished": finished, "stopped_early": stopped_early, "eval_history": history,
                 "time": time.time(), "agent": agent.training_state(), "torch_rng": encode_bytes(torch.get_rng_state())}  # fmt: skip
        if torch.cuda.is_available() and device.startswith("cuda"):
            state["cuda_rng"] = [encode_bytes(s) for s in torch.cuda.get_rng_state_all()]

        def fill(d: Path) -> None:
            agent.save(d)
            (d / STATE).write_text(json.dumps(state))

        write_unit(checkpoint, fill)

    def evaluate_now() -> bool:
        """Evaluate on training and validation levels; True when early stopping says stop."""
        row: dict[str, Any] = {"step": step}
        for which, key in (("train", "train_levels"), ("validation", "validation_levels")):
            if which == "validation" and not split.validation:
                continue
            r = evaluate_on_levels(agent, eval_split, which, episodes=cfg.eval.episodes, seed=cfg.seed, num_envs=cfg.eval_num_envs)
            tb.add_scalar(f"eval/{key}/mean_return", r.mean_return, step)
            if r.mean_normalized is not None:
                tb.add_scalar(f"eval/{key}/mean_normalized", r.mean_normalized, step)
            row[which] = r.mean_return
        if cfg.held_out_curve:  # TensorBoard only: kept out of ``history``, so early stopping never sees it
            r = evaluate_on_levels(agent, split, "held_out", episodes=cfg.eval.episodes, seed=cfg.seed, num_envs=cfg.eval_num_envs)
            tb.add_scalar(f"{HELD_OUT_CURVE}/mean_return", r.mean_return, step)
        history.append(row)
        patience = cfg.eval.early_stopping_patience
        if patience and "validation" in row:
            best_at = max(range(len(history)), key=lambda i: history[i].get("validation", -np.inf))
            if len(history) - 1 - best_at >= patience:
                return True
        return False

    with stop_on_signals(flag):
        try:
            while step < cfg.steps and not flag["stop"]:
                batch = ds.sample_windows(cfg.batch_size, cfg.context_length, rng) if windows else ds.sample_transitions(cfg.batch_size, rng)
                losses = agent.update(batch)
                step += 1
                if step % 50 == 0 or step == cfg.steps:
                    rate = (step - s0) / max(time.perf_counter() - t0, 1e-9)
                    for k, v in losses.items():  # train/loss/..., train/grad_norm, ...
                        tb.add_scalar(f"train/{k}", v, step)
                    tb.add_scalar("time/updates_per_second", rate, step)
                    loss = next(iter(losses.values()), float("nan"))
                    bar.update(completed=step, rate=f"{rate:,.1f}", loss=f"loss {loss:.4f}")
                if cfg.eval.enabled and step % cfg.eval.every_steps == 0:
                    if evaluate_now():
                        stopped_early = True
                        break
                if step % checkpoint_every == 0:
                    save_checkpoint(finished=False)
        finally:
            bar.close()
            tb.flush()
    finished = step >= cfg.steps or stopped_early
    if finished and cfg.eval.enabled and (not history or history[-1]["step"] != step):
        evaluate_now()  # the final policy's point on the curves (a run shorter than eval.every_steps has only this one)
    save_checkpoint(finished=finished)
    if finished:
        write_unit(run_dir / MODEL_DIR, agent.save)
    tb.close()
    if flag["stop"] and not finished:
        raise interrupted(f"step {step:,}", run_dir / CHECKPOINT_DIR)
    return run_dir


def _stopped_early(run_dir: Path, state: dict[str, Any]) -> bool:
    """Whether the checkpoint's run ended by early stopping: its state says so, or (checkpoints written before
    it said so) it finished before the steps its saved config asked for."""
    if "stopped_early" in state:
        return bool(state["stopped_early"])
    if not state.get("finished") or not (run_dir / CONFIG).is_file():
        return False
    saved = read_run_config(run_dir).get("steps")
    return isinstance(saved, int) and isinstance(state.get("step"), int) and state["step"] < saved


def training_summary(run_dir: str | Path) -> dict[str, Any]:
    """``{"step", "finished", "stopped_early"}`` of an offline run directory's latest checkpoint (``step``
    None before the first one): what ``rlgen train`` reports before and after training."""
    path = Path(run_dir) / CHECKPOINT_DIR / STATE
    if not path.is_file():
        return {"step": None, "finished": False, "stopped_early": False}
    state = read_state(path.parent)
    return {"step": int(state["step"]), "finished": bool(state.get("finished")), "stopped_early": _stopped_early(Path(run_dir), state)}


def _restore_training_state(checkpoint: Path, state: dict[str, Any], agent: OfflineAgent, rng: np.random.Generator) -> tuple[int, list[dict[str, Any]]]:
    """Put back the sampler, torch RNG and agent counters saved with ``checkpoint``; returns (step, eval history)."""
    try:
        rng.bit_generator.state = state["rng"]
        agent.restore_training_state(state.get("agent", {}))
        if "torch_rng" in state:  # dropout (DT, BCT) draws from the global generator
            torch.set_rng_state(decode_bytes(state["torch_rng"]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([decode_bytes(s) for s in state["cuda_rng"]])
        return int(state["step"]), list(state.get("eval_history", []))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RlgenError(f"{checkpoint / STATE} is damaged ({type(e).__name__}: {e}); delete {checkpoint} to restart from step 0") from None
