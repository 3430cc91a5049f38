"""Skill levels: which checkpoints of a policy run a dataset's ``skill`` means, and how close the data came.

``expert`` is the last ladder rung; ``medium`` the earlier rung whose train-level return is nearest
``medium_fraction`` of the expert's; ``mixed`` both (expert with probability ``mixed_expert_fraction``
per episode); ``random`` uniform actions. Works for any online algorithm's ladder (``rlgen.agents.run_dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents.run_dir import CONFIG, read_ladder, read_run_config
from rlgen.config import CollectConfig
from rlgen.data.format import inside
from rlgen.envs import LevelSplit, parse_env_id
from rlgen.errors import RlgenError

log = logging.getLogger(__name__)

#: ``rlgen collect`` warns when no ladder rung's return is this close to the medium target (as a fraction of the expert's).
MEDIUM_TOLERANCE = 0.1


def resolve_skill(cfg: CollectConfig) -> list[dict[str, Any]]:
    """The policies behind ``cfg.skill``, read from the PPO run's ladder: one dict per policy label
    with ``label``, ``checkpoint`` (relative to the run), ``step`` and the rung's ``mean_return``.

    ``expert`` is the last rung; ``medium`` the earlier rung whose train-level return is nearest
    ``medium_fraction`` of the expert's; ``mixed`` both; ``random`` uniform actions.
    """
    if cfg.skill == "random":
        return [{"label": "random"}]
    assert cfg.policy_run is not None
    if not Path(cfg.policy_run).is_dir():
        raise RlgenError(f"policy_run {cfg.policy_run!r} is not a directory; give the run directory of `rlgen train`")
    ladder_path = Path(cfg.policy_run) / "ladder.json"
    try:
        rungs = read_ladder(cfg.policy_run).get("rungs", [])
        ok = isinstance(rungs, list) and all(isinstance(r, dict) and isinstance(r.get("step"), int) and isinstance(r.get("checkpoint"), str)
                                             and isinstance(r.get("mean_return"), (int, float)) for r in rungs)  # fmt: skip
    except (ValueError, AttributeError) as e:  # torn or hand-edited JSON
        raise RlgenError(f"{ladder_path} is not a readable ladder ({e})") from None
    if not ok:
        raise RlgenError(f"{ladder_path}: rungs must be a list of {{step: int, checkpoint: str, mean_return: number}}")
    rungs = sorted(rungs, key=lambda r: r["step"])
    if not rungs:
        raise RlgenError(f"{cfg.policy_run!r} has no ladder rungs yet; let `rlgen train` run past ladder.every_steps")
    expert = {"label": "expert", **{k: rungs[-1][k] for k in ("checkpoint", "step", "mean_return")}}
    if cfg.skill == "expert":
        return [expert]
    earlier = rungs[:-1]
    if not earlier:
        raise RlgenError(f"skill={cfg.skill} needs a medium policy, but {cfg.policy_run!r} has a single ladder rung; "
                         "train with a smaller ladder.every_steps to keep checkpoints along the way")  # fmt: skip
    target = cfg.medium_fraction * expert["mean_return"]
    rung = min(earlier, key=lambda r: (abs(r["mean_return"] - target), r["step"]))
    medium = {"label": "medium", "target_return": target, **{k: rung[k] for k in ("checkpoint", "step", "mean_return")}}
    _warn_if_no_rung_near(cfg, earlier, expert, medium)
    return [medium] if cfg.skill == "medium" else [expert, medium]


def target_fraction(cfg: CollectConfig) -> float | None:
    """The mean return the recipe aims at, as a fraction of the expert's: 1 (expert), ``medium_fraction``,
    or for mixed ``f + (1 - f) * medium_fraction`` with ``f = mixed_expert_fraction`` (defaults: 0.75,
    the reference's mixed data)."""
    f = cfg.mixed_expert_fraction
    return {"expert": 1.0, "medium": cfg.medium_fraction, "mixed": f + (1 - f) * cfg.medium_fraction}.get(cfg.skill)


def _warn_if_no_rung_near(cfg: CollectConfig, earlier: list[dict[str, Any]], expert: dict[str, Any], medium: dict[str, Any]) -> None:
    """One warning line when the ladder is too coarse for the medium target (issue 12: DoorKey's mixed
    data landed at 66% of expert because the nearest rung was at 0.133 for a target of 0.48)."""
    e = float(expert["mean_return"])
    if e <= 0:
        log.warning("the expert rung of %s has mean return %.3g <= 0: medium_fraction=%s of it means nothing; pick skill=expert or random",
                    cfg.policy_run, e, cfg.medium_fraction)  # fmt: skip
        return
    if abs(float(medium["mean_return"]) / e - cfg.medium_fraction) <= MEDIUM_TOLERANCE:
        return
    returns = ", ".join(f"{float(r['mean_return']):.3g}" for r in earlier[-40:])
    more = f"{len(earlier) - 40} earlier, " if len(earlier) > 40 else ""
    mixed = ""
    if cfg.skill == "mixed":
        f = cfg.mixed_expert_fraction
        mixed = f"; mixed data will average about {f + (1 - f) * float(medium['mean_return']) / e:.0%} of expert, not {target_fraction(cfg):.0%}"
    log.warning(
        "no ladder rung of %s lies within %.1f of the medium target %.3g (%s x expert %.3g); rung returns: %s%s; using %.3g "
        "(step %s, %.0f%% of expert)%s. Train with a smaller ladder.every_steps for more rungs",
        cfg.policy_run, MEDIUM_TOLERANCE, cfg.medium_fraction * e, cfg.medium_fraction, e, more, returns, float(medium["mean_return"]),
        medium["step"], 100 * float(medium["mean_return"]) / e, mixed,
    )  # fmt: skip


def check_policies(cfg: CollectConfig, specs: list[dict[str, Any]]) -> None:
    """Every checkpoint the specs name lies inside the policy run and exists (checked before anything is written)."""
    for spec in specs:
        if spec["label"] == "random":
            continue
        assert cfg.policy_run is not None
        path = inside(Path(cfg.policy_run), spec["checkpoint"], Path(cfg.policy_run) / "ladder.json", f"{spec['label']} checkpoint")
        if not path.is_file():
            raise RlgenError(f"{spec['label']} checkpoint {str(path)!r} (ladder rung at step {spec['step']:,}) is missing; "
                             "the ladder and its checkpoints must stay together")  # fmt: skip


def check_policy_env(cfg: CollectConfig, split: Any) -> None:
    """The policy run was trained on the collection's env (checked before anything is written): a DoorKey-6x6
    policy must not silently collect on DoorKey-5x5, whose observations have the same shape.

    Raises:
        RlgenError: one line naming both envs.
    """
    if cfg.skill == "random":
        return
    assert cfg.policy_run is not None
    data = read_run_config(cfg.policy_run)
    source = Path(cfg.policy_run) / CONFIG
    try:
        resolved = (data.get("resolved") or {}).get("split")
        run_env = LevelSplit.from_dict(resolved).id if isinstance(resolved, dict) else "/".join(parse_env_id(data["env"]))
    except KeyError:
        raise RlgenError(f"{source} names no env; a policy run's config.yaml says what it was trained on (restore it)") from None
    except (RlgenError, TypeError, ValueError, AttributeError) as e:
        raise RlgenError(f"{source}: its env or split cannot be read ({e})") from None
    if run_env != split.id:
        raise RlgenError(f"policy_run {cfg.policy_run!r} was trained on {run_env}, but this collection's env is {split.id}: a policy "
                         f"acts in the env it was trained on (collect with env={run_env}, or train a policy on {split.id})")  # fmt: skip


def check_policy_spaces(cfg: CollectConfig, label: str, run_split: Any, num_actions_of_policy: int, observation_shape: tuple[int, ...],
                        num_actions: int) -> None:  # fmt: skip
    """The ``label`` policy (trained on ``run_split``) takes the collection env's observations and has its
    number of actions (checked before anything is written; an SB3 policy fed other shapes fails deep inside).

    Raises:
        RlgenError: one line naming both shapes (or counts) and the split options that make them.
    """
    from rlgen.envs import make_env  # noqa: PLC0415 - builds an env; the schema-only importers of this module need none

    if num_actions_of_policy != num_actions:
        raise RlgenError(f"the {label} policy of {cfg.policy_run!r} has {num_actions_of_policy} actions; this collection's env has "
                         f"{num_actions}")  # fmt: skip
    probe = make_env(run_split, "train", num_envs=1, seed=0, levels=[run_split.levels("train").min])
    trained_on = tuple(int(x) for x in probe.single_observation_space.shape)
    probe.close()
    if trained_on != tuple(observation_shape):
        raise RlgenError(f"the {label} policy of {cfg.policy_run!r} takes observations of shape {trained_on} (split.options "
                         f"{dict(run_split.options)}); this collection's env gives {tuple(observation_shape)} (split.options "
                         f"{dict(cfg.split.options or {})}): collect with the options the policy was trained with")  # fmt: skip


def return_vs_expert(cfg: CollectConfig, specs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The manifest's record of the dataset's mean return as a fraction of the expert's (skills from a
    policy run only). The expert's return is its episodes' in this dataset when it has some (what the
    reference compares to: its expert dataset's mean), else the expert rung's ladder evaluation."""
    if cfg.skill == "random" or not rows:
        return None
    mean = float(np.mean([r["return"] for r in rows]))
    expert_rows = [r["return"] for r in rows if r["policy"] == "expert"]
    if expert_rows:
        expert, source = float(np.mean(expert_rows)), f"the {len(expert_rows)} expert episodes of this dataset"
    else:
        assert cfg.policy_run is not None
        rungs = sorted(read_ladder(cfg.policy_run).get("rungs", []), key=lambda r: r["step"])
        expert, source = float(rungs[-1]["mean_return"]), f"the expert rung's ladder evaluation (step {rungs[-1]['step']:,})"
    fraction = mean / expert if expert > 0 else None
    target = target_fraction(cfg)
    if fraction is not None and target is not None and abs(fraction - target) > MEDIUM_TOLERANCE:
        log.warning("the %s data's mean return %.3g is %.0f%% of the expert's %.3g; the recipe aims at %.0f%%", cfg.skill, mean,
                    100 * fraction, expert, 100 * target)  # fmt: skip
    return {"mean_return": mean, "expert_return": expert, "expert_return_from": source, "fraction": fraction, "target_fraction": target}
