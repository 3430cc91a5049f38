"""JAX PPO: GAE against a plain loop, learning on trivial rulesets, save/load, config errors, tiny CLI runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xminigrid", reason="the JAX PPO needs the jax extra: pip install 'rlgen[jax]'")

import jax  # noqa: E402

from rlgen.agents.ppo_jax import JaxPPOAgent, evaluate, fit, gae  # noqa: E402
from rlgen.cli import main  # noqa: E402
from rlgen.envs import xland  # noqa: E402
from rlgen.errors import RlgenError  # noqa: E402
from rlgen.evaluation import RandomPolicy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "ppo_jax" / "xland_trivial.yaml")
OPTIONS = {"rulesets": "trivial", "num_rulesets": 2000, "ruleset_seed": 0, "goal_obs": True}
# a CPU-test-sized run: 128 envs x 16 steps per update
TINY = ["num_envs=128", "split.num_levels=1000", "split.options.num_rulesets=2000", "progress=false", "eval_num_envs=200"]


@pytest.fixture(autouse=True)
def ruleset_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RLGEN_CACHE", str(tmp_path_factory.getbasetemp() / "rlgen-cache"))


@pytest.fixture
def split():
    return xland.default_split("r1-9x9", num_levels=1000, options=OPTIONS)


def test_gae_matches_a_python_loop(rng):
    t, n, gamma, lam = 12, 5, 0.97, 0.9
    rewards, values = rng.random((t, n)).astype(np.float32), rng.random((t, n)).astype(np.float32)
    dones, last = rng.random((t, n)) < 0.2, rng.random(n).astype(np.float32)
    adv, ret = jax.device_get(gae(rewards, values, dones, last, gamma, lam))
    expected = np.zeros((t, n), np.float32)
    next_adv, next_value = np.zeros(n, np.float32), last
    for i in reversed(range(t)):
        not_done = 1.0 - dones[i]
        delta = rewards[i] + gamma * next_value * not_done - values[i]
        next_adv = delta + gamma * lam * not_done * next_adv
        expected[i], next_value = next_adv, values[i]
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-6)


def test_ppo_improves_return_on_trivial_rulesets(split):
    agent = JaxPPOAgent.for_split(split, {"hidden_dim": 64}, seed=0)
    before = evaluate(agent, split, "train", episodes=300, seed=1, num_envs=300)
    random = evaluate(RandomPolicy(agent.num_actions), split, "train", episodes=300, seed=1, num_envs=300)
    synced = []
    fit(agent, split, total_steps=245_760, num_envs=128, log_every_steps=81_920, on_sync=lambda a, m: synced.append(m))
    after = evaluate(agent, split, "train", episodes=300, seed=1, num_envs=300)
    held = evaluate(agent, split, "held_out", episodes=300, seed=1, num_envs=300)
    print(f"random {random.mean_return:.3f}  untrained {before.mean_return:.3f}  trained {after.mean_return:.3f} "
          f"(held-out {held.mean_return:.3f}); train steps/s {synced[-1]['steps_per_second']:,.0f}")
    assert agent.env_steps == 245_760 and len(synced) == 3
    assert after.mean_return > max(before.mean_return, random.mean_return) + 0.1
    assert held.mean_return > random.mean_return + 0.1
    assert split.held_out.contains(held.levels).all() and len(set(held.levels.tolist())) == 300


def test_saved_and_loaded_params_act_identically(split, tmp_path):
    agent = JaxPPOAgent.for_split(split, {"hidden_dim": 64}, seed=3)
    loaded = JaxPPOAgent.load(agent.save(tmp_path / "agent.msgpack"))
    assert loaded.settings == agent.settings and loaded.obs_shape == (7, 5, 5)
    jenv = xland.make_jax_env(split.env, split.options)
    obs = np.stack([np.asarray(jenv.reset(jax.random.PRNGKey(i), i)[1]) for i in range(64)])
    assert np.array_equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    a, b = agent.network.apply(agent.params, obs), loaded.network.apply(loaded.params, obs)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    r1 = evaluate(agent, split, "held_out", episodes=300, seed=5, num_envs=300)
    r2 = evaluate(loaded, split, "held_out", episodes=300, seed=5, num_envs=100)  # other batching, same episodes
    assert np.array_equal(r1.returns, r2.returns) and np.array_equal(r1.lengths, r2.lengths)
    (tmp_path / "bad.msgpack").write_bytes(b"\x80")
    with pytest.raises(RlgenError, match="not a JAX PPO checkpoint"):
        JaxPPOAgent.load(tmp_path / "bad.msgpack")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ppo_jax.num_minibatches=7", "num_envs * ppo_jax.n_steps = 1024 * 16 = 16384 must be divisible by ppo_jax.num_minibatches = 7"),
        ("ppo_jax.lerning_rate=0.1", "unknown key `ppo_jax.lerning_rate` (did you mean `ppo_jax.learning_rate`?)"),
        ("split.options.rulesets=huge", "rulesets='huge'; allowed: trivial, small, medium, high"),
        ("ppo_jax.gamma=2", "key `ppo_jax.gamma` = 2"),
    ],
)
def test_bad_config_is_one_clear_line(override, message, capsys):
    assert main(["train", CONFIG, override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlgen: error: ") and err.count("\n") == 1 and message in err, err


def test_ppo_jax_on_another_suite_is_refused(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("algo: ppo_jax\nenv: procgen/coinrun\n")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "algo ppo_jax trains on xland/... envs only, got env 'procgen/coinrun'; use algo ppo for procgen" in err


def test_cli_train_resume_evaluate_collect(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", CONFIG, *TINY, f"out_dir={run}", "log_every_steps=2048", "ladder.every_steps=4096",
            "ladder.episodes=30", "checkpoint_every=4096", "ppo_jax.hidden_dim=32"]
    assert main([*args, "total_steps=8192"]) == 0
    ladder = json.loads((run / "ladder.json").read_text())
    assert [r["step"] for r in ladder["rungs"]] == [4096, 8192]
    config = (run / "config.yaml").read_text()
    assert "sha256:" in config and "platform: cpu" in config
    assert list((run / "tb" / "ppo_jax").glob("events.*"))
    # what a process killed after the checkpoint would have left: events past it
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run / "tb" / "ppo_jax")) as w:
        w.add_scalar("train/entropy", 123.0, 10240)
    # resume with a larger budget: the step counter continues from the checkpoint
    assert main([*args, "total_steps=12288"]) == 0
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 12288 and state["finished"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb" / "ppo_jax"), size_guidance={"scalars": 0})
    acc.Reload()
    entropy = acc.Scalars("train/entropy")
    assert [e.step for e in entropy] == list(range(2048, 12289, 2048)) and 123.0 not in [e.value for e in entropy]  # one curve, each step once
    assert [r["step"] for r in json.loads((run / "ladder.json").read_text())["rungs"]] == [4096, 8192, 12288]
    for group in ("eval/train_levels", "eval/validation_levels", "eval/held_out_levels_never_used_for_selection"):  # every rung, on each level set
        assert [e.step for e in acc.Scalars(f"{group}/mean_return")] == [4096, 8192, 12288], group
    capsys.readouterr()
    assert main([*args, "total_steps=12288", "num_envs=64"]) == 2  # another config in the same run dir
    assert "different config (keys differ: num_envs)" in capsys.readouterr().err

    assert main(["evaluate", str(run), "--episodes", "30", "--random-baseline"]) == 0
    out = capsys.readouterr().out
    assert "ppo_jax  gap (normalized train - held-out)" in out and "random   held_out" in out
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [(r["agent"], r["which"]) for r in rows] == [("ppo_jax", "train"), ("ppo_jax", "held_out"), ("random", "train"), ("random", "held_out")]
    assert all(len(r["returns"]) == 30 and r["env"] == "xland/XLand-MiniGrid-R1-9x9" for r in rows)
    assert all(1050 <= lv <= 1999 for lv in rows[1]["levels"]) and all(lv < 1000 for lv in rows[0]["levels"])

    from rlgen.data import load_dataset

    data = tmp_path / "data"
    base = ["collect", str(ROOT / "configs" / "collect" / "xland_trivial.yaml"), "split.num_levels=1000",
            "split.options.num_rulesets=2000", f"policy_run={run}", "skill=mixed", "num_envs=64", "progress=false"]
    collect = [*base, "transitions=3000", f"out_dir={data}"]
    assert main(collect) == 0
    ds = load_dataset(data)
    assert ds.verify() == [] and ds.num_transitions >= 3000
    m = ds.manifest
    assert m["observation_space"] == {"shape": [7, 5, 5], "dtype": "uint8"} and m["action_space"] == {"n": 6}
    assert {p["label"] for p in m["policies"]} == {"expert", "medium"} and set(m["returns_by_policy"]) <= {"expert", "medium"}
    assert m["split"]["train"] == "0-999" and m["rulesets"]["count"] == 2000
    assert all(0 <= lv < 1000 for lv in ds.levels)
    assert main(collect) == 0  # finished: nothing to do
    assert main([*base, "transitions=null", "episodes=40", f"out_dir={tmp_path / 'data40'}"]) == 0
    assert load_dataset(tmp_path / "data40").num_episodes == 40  # exactly the episodes that started


def test_bench_xland_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "xland.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[-1] == "ratio" and [line.split()[:2] for line in lines[1:]] == [["env", "random"], ["ppo", "train"]]
    assert all(float(line.split()[-1]) > 0 for line in lines[1:])
    assert "device: cpu" in result.stderr or "device: gpu" in result.stderr


def test_load_puts_the_agent_where_the_agent_protocol_says_not_on_jaxs_default_of_the_moment():
    # Before: JaxPPOAgent.load(path) (device None) used JAX's current default device, which an earlier load_run
    # (device=cpu) sets process-wide, while the Agent protocol's load(path, device="auto") means "a GPU when there
    # is one". Two host devices stand in for a GPU and a CPU: the default of the moment is the second.
    path = ROOT / "tests" / "fixtures" / "old_runs" / "ppo_jax" / "ladder" / "step_0000000256.msgpack"
    code = ("import jax; from rlgen.agents.ppo_jax import JaxPPOAgent; from rlgen.devices import jax_device; "
            "jax.config.update('jax_default_device', jax.devices('cpu')[1]); "
            "on = lambda a: sorted({str(d) for x in jax.tree_util.tree_leaves(a.params) for d in x.devices()}); "
            f"print(on(JaxPPOAgent.load({str(path)!r})), on(JaxPPOAgent.load({str(path)!r}, device=None)), str(jax_device('auto')))")
    env = {**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['cpu:0']", "['cpu:0']", "cpu:0"], out.stdout
