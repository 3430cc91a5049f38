"""Loading a run directory never runs code from it.

Each route by which an older rlgen executed a planted payload (SB3 ``.zip`` checkpoints, the pickled
VecNormalize, ladder paths leaving the run directory) is tried with a payload that creates a file
when unpickled: the file must never appear, through ``rlgen evaluate``, ``rlgen collect
policy_run=`` and resume. Run directories of older rlgen versions (SB3 ``.zip`` rungs) still
evaluate, from their ``policy.pth`` weights alone.
"""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rlgen.agents.ppo_sb3 import build_model, train_ppo
from rlgen.agents.ppo_sb3 import load_run as load_run_agent
from rlgen.agents.run_dir import read_ladder
from rlgen.agents.sb3_vec_env import RlgenVecEnv
from rlgen.cli import main
from rlgen.agents.run_dir import write_resolved_config
from rlgen.config import PPOConfig, load_config
from rlgen.envs import make_env
from rlgen.errors import RlgenError

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2",
    "ppo.n_epochs=1", "ppo.normalize_reward=true", "ladder.every_steps=128", "ladder.episodes=2",
    "eval_num_envs=2", "progress=false", "device=cpu",
]  # fmt: skip
COLLECT = ["env=minigrid/empty-5x5", "split.num_levels=10", "skill=expert", "transitions=40", "num_envs=4", "progress=false", "device=cpu"]


class Plant:
    """Unpickling this creates ``marker`` (the stand-in for an attacker's code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def tiny_config(out: Path, *extra: str) -> PPOConfig:
    return load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", [*TINY, f"out_dir={out}", *extra], schema=PPOConfig)


def make_legacy_run(out: Path) -> Path:
    """A run directory as rlgen wrote it before weights-only checkpoints: SB3 ``model.save`` zips for
    the rung and ``latest``, a pickled VecNormalize, ``ladder.json`` and ``state.json`` (unfinished).
    The weights are perturbed, so a loader that ignored them (a fresh seeded policy) would be caught."""
    from stable_baselines3.common.vec_env import VecNormalize

    cfg = tiny_config(out, "total_steps=256")
    split = cfg.level_split()
    write_resolved_config(cfg, out, extra={"split": split.to_dict()})
    venv = VecNormalize(RlgenVecEnv(make_env(split, "train", num_envs=cfg.num_envs, seed=0)), norm_obs=False)
    model = build_model(cfg, venv, out)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    model.num_timesteps = 128
    (out / "ladder").mkdir()
    (out / "checkpoints").mkdir()
    model.save(out / "ladder/step_0000000128.zip")
    model.save(out / "checkpoints/latest.zip")
    venv.save(out / "checkpoints/latest_vecnormalize.pkl")
    venv.close()
    rung = {"step": 128, "checkpoint": "ladder/step_0000000128.zip", "mean_return": 0.1, "mean_normalized": 0.1, "episodes": 2}
    (out / "ladder.json").write_text(json.dumps({"env": split.id, "split": split.to_dict(), "rungs": [rung]}))
    (out / "checkpoints/state.json").write_text(json.dumps({"num_timesteps": 128, "finished": False}))
    return out


def plant_in_sb3_zip(path: Path, marker: Path) -> None:
    """Replace a cloudpickled field of an SB3 zip's ``data`` by the payload (as an attacker would)."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data = json.loads(members["data"])
    data["observation_space"][":serialized:"] = base64.b64encode(pickle.dumps(Plant(marker))).decode()
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def probs(policy, obs: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return policy.get_distribution(torch.as_tensor(obs)).distribution.probs


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory) -> Path:
    return make_legacy_run(tmp_path_factory.mktemp("legacy") / "run")


@pytest.fixture
def fresh_legacy(tmp_path, legacy_run) -> Path:
    import shutil

    return Path(shutil.copytree(legacy_run, tmp_path / "legacy"))


def test_an_older_runs_zip_rung_evaluates_from_its_weights_alone(fresh_legacy, tmp_path, capsys):
    from stable_baselines3 import PPO

    obs = np.random.default_rng(0).integers(0, 11, size=(16, 3, 7, 7), dtype=np.uint8)
    rung = fresh_legacy / "ladder/step_0000000128.zip"
    expected = probs(PPO.load(rung, device="cpu").policy, obs)  # our own, trusted file: SB3's loader is the reference
    marker = tmp_path / "pwned"
    plant_in_sb3_zip(rung, marker)
    agent = load_run_agent(fresh_legacy, device="cpu")
    torch.testing.assert_close(probs(agent.policy, obs), expected)
    assert main(["evaluate", str(fresh_legacy), "--episodes", "2"]) == 0, capsys.readouterr().err
    assert "gap" in capsys.readouterr().out
    assert main(["collect", str(ROOT / "configs/collect/minigrid_doorkey.yaml"), *COLLECT, f"policy_run={fresh_legacy}",
                 f"out_dir={tmp_path / 'data'}"]) == 0, capsys.readouterr().err  # fmt: skip
    assert not marker.exists()


def test_an_older_run_is_not_resumed_and_its_pickles_are_never_read(tmp_path):
    legacy = make_legacy_run(tmp_path / "legacy")  # in place: its config.yaml names this out_dir
    marker = tmp_path / "pwned"
    plant_in_sb3_zip(legacy / "checkpoints/latest.zip", marker)
    (legacy / "checkpoints/latest_vecnormalize.pkl").write_bytes(pickle.dumps(Plant(marker)))
    with pytest.raises(RlgenError, match="older rlgen.*not resumed"):
        train_ppo(tiny_config(legacy, "total_steps=256"))
    assert not marker.exists()


def test_resume_never_reads_a_planted_vecnormalize_pickle(tmp_path):
    run = train_ppo(tiny_config(tmp_path / "run", "total_steps=128"))
    marker = tmp_path / "pwned"
    (run / "checkpoints/latest_vecnormalize.pkl").write_bytes(pickle.dumps(Plant(marker)))  # what older rlgen unpickled on resume
    train_ppo(tiny_config(run, "total_steps=256"))
    assert not marker.exists()
    assert json.loads((run / "checkpoints/state.json").read_text())["num_timesteps"] == 256


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path, capsys):
    run = train_ppo(tiny_config(tmp_path / "run", "total_steps=128"))
    rung = run / read_ladder(run)["rungs"][-1]["checkpoint"]
    marker = tmp_path / "pwned"
    payload = torch.load(rung, weights_only=True)
    torch.save({**payload, "policy": Plant(marker)}, rung)
    assert main(["evaluate", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to load" in err and rung.name in err
    assert main(["collect", str(ROOT / "configs/collect/minigrid_doorkey.yaml"), *COLLECT, f"policy_run={run}", f"out_dir={tmp_path / 'data'}"]) == 2
    assert "refusing to load" in capsys.readouterr().err
    torch.save({**payload, "policy": Plant(marker)}, run / "checkpoints/latest.pt")
    with pytest.raises(RlgenError, match="refusing to load"):  # resume
        train_ppo(tiny_config(run, "total_steps=256"))
    assert not marker.exists()


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
def test_ladder_paths_that_leave_the_run_directory_are_refused(fresh_legacy, tmp_path, capsys, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = outside / "evil.zip"
    evil.write_bytes((fresh_legacy / "ladder/step_0000000128.zip").read_bytes())
    marker = tmp_path / "pwned"
    plant_in_sb3_zip(evil, marker)
    if where == "symlink":
        (fresh_legacy / "ladder/step_9.zip").symlink_to(evil)
        path = "ladder/step_9.zip"
    else:
        path = "../outside/evil.zip" if where == "dotdot" else str(evil)
    ladder = json.loads((fresh_legacy / "ladder.json").read_text())
    ladder["rungs"][0]["checkpoint"] = path
    (fresh_legacy / "ladder.json").write_text(json.dumps(ladder))
    assert main(["evaluate", str(fresh_legacy), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ladder.json" in err and path in err and "leaves the run directory" in err
    assert main(["collect", str(ROOT / "configs/collect/minigrid_doorkey.yaml"), *COLLECT, f"policy_run={fresh_legacy}",
                 f"out_dir={tmp_path / 'data'}"]) == 2  # fmt: skip
    assert "leaves the run directory" in capsys.readouterr().err
    assert main(["evaluate", str(fresh_legacy), "--episodes", "2", "--checkpoint", "../outside/evil.zip"]) == 2
    assert "leaves the run directory" in capsys.readouterr().err
    assert not marker.exists()


def test_jax_checkpoints_hold_data_only_and_their_ladder_paths_are_checked(tmp_path):
    pytest.importorskip("flax")
    import msgpack
    from flax import serialization

    from rlgen.agents.ppo_jax import FORMAT, JaxPPOAgent
    from rlgen.agents.ppo_jax import load_run as load_jax_run

    agent = JaxPPOAgent((6, 5, 5), 6, {"hidden_dim": 8, "embed_dim": 4}, seed=0)
    good = agent.save(tmp_path / "run/ladder/step_1.msgpack")
    np.testing.assert_array_equal(JaxPPOAgent.load(good).act(np.zeros((2, 6, 5, 5), np.uint8), True), agent.act(np.zeros((2, 6, 5, 5), np.uint8), True))
    marker = tmp_path / "pwned"
    meta = json.dumps({"obs_shape": [6, 5, 5], "num_actions": 6, "settings": {"hidden_dim": 8, "embed_dim": 4}})
    # msgpack keeps bytes as bytes (a pickle inside is never unpickled); params must match the network
    bad = tmp_path / "run/ladder/bad.msgpack"
    bad.write_bytes(serialization.msgpack_serialize({"format": FORMAT, "meta": meta, "params": {"x": pickle.dumps(Plant(marker))}}))
    with pytest.raises(RlgenError, match="bad.msgpack: params"):
        JaxPPOAgent.load(bad)
    # arrays of object dtype cannot be decoded at all
    obj = msgpack.ExtType(1, msgpack.packb(((1,), b"O", pickle.dumps(Plant(marker))), use_bin_type=True))
    bad.write_bytes(msgpack.packb({"format": FORMAT, "meta": meta, "params": obj}, use_bin_type=True))
    with pytest.raises(RlgenError, match="is not a JAX PPO checkpoint"):
        JaxPPOAgent.load(bad)
    (tmp_path / "outside.msgpack").write_bytes(good.read_bytes())
    rung = {"step": 1, "checkpoint": "../../outside.msgpack", "mean_return": 0.0}
    (tmp_path / "run/ladder.json").write_text(json.dumps({"rungs": [rung]}))
    with pytest.raises(RlgenError, match="leaves the run directory"):
        load_jax_run(tmp_path / "run")
    assert not marker.exists()


@pytest.mark.parametrize("content", ['{"rungs": [{"step": 1, "chec', "[]", '{"rungs": [{"step": "1", "checkpoint": "a", "mean_return": 0}]}'])
def test_a_torn_or_malformed_ladder_is_one_line_naming_it(tmp_path, capsys, content):
    run = train_ppo(tiny_config(tmp_path / "run", "total_steps=128"))
    (run / "ladder.json").write_text(content)
    assert main(["evaluate", str(run), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "ladder.json" in err
    assert main(["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY, f"out_dir={run}", "total_steps=256"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ladder.json" in err


def test_a_torn_state_file_is_one_line_naming_it(tmp_path, capsys):
    run = train_ppo(tiny_config(tmp_path / "run", "total_steps=128"))
    (run / "checkpoints/state.json").write_text('{"num_timesteps": 12')
    assert main(["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *TINY, f"out_dir={run}", "total_steps=256"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "state.json" in err and "Traceback" not in err
