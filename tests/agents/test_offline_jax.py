"""JAX offline agents (bc_jax): the loss is the torch agent's, seeds vmapped in one process are the runs each
seed would make alone, a resumed or killed run ends bit-identical to an uninterrupted one, the CLI trains and
evaluates per seed, image datasets are refused in one line."""

import json
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

from flax import serialization  # noqa: E402

from rlgen.agents.offline_jax import run as jax_run  # noqa: E402
from rlgen.agents.offline_jax.train import train_offline_jax  # noqa: E402
from rlgen.cli import main  # noqa: E402
from rlgen.config import load_config  # noqa: E402
from rlgen.config.offline_jax import JaxOfflineConfig  # noqa: E402
from rlgen.data import Episode, write_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
XLAND = "XLand-MiniGrid-R1-9x9"
OBS_SHAPE = (7, 5, 5)
NUM_ACTIONS = 6


def xland_dataset(path: Path, episodes: int = 30, seed: int = 0) -> Path:
    """Symbolic XLand-shaped episodes (obs (7, 5, 5) codes 0-9) whose action is the code at (0, 2, 2) mod 6, on
    a 200-ruleset trivial split (levels 0-99 train): a dataset the JAX agents and evaluator take as a real one."""
    from rlgen.envs.xland import default_split

    split = default_split(XLAND, num_levels=100, options={"rulesets": "trivial", "num_rulesets": 200, "ruleset_seed": 0, "goal_obs": True})
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(episodes):
        t = int(rng.integers(3, 10))
        obs = rng.integers(0, 10, (t + 1, *OBS_SHAPE), dtype=np.uint8)
        rewards = np.zeros(t, np.float32)
        rewards[-1] = 1.0
        term = np.zeros(t, bool)
        term[-1] = True
        eps.append(Episode(obs, (obs[:-1, 0, 2, 2] % NUM_ACTIONS).astype(np.int64), rewards, term, np.zeros(t, bool), level=i % 100, policy="expert"))
    return write_dataset(path, eps, {"kind": "dataset", "env": f"xland/{XLAND}", "skill": "expert", "split": split.to_dict(),
                                     "observation_space": {"shape": list(OBS_SHAPE), "dtype": "uint8"}, "action_space": {"n": NUM_ACTIONS},
                                     "policies": [{"label": "expert"}]})  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return xland_dataset(tmp_path_factory.mktemp("jaxdata") / "d")


def run_config(algo: str, data: Path, out: Path, *extra: str) -> JaxOfflineConfig:
    # One compiled chunk length (sync_every = checkpoint_every = 2) for every test: compiles are shared. Targets
    # copy every 3 updates: across chunk ends and resume points, so a resume that lost the update count shows.
    return load_config(ROOT / f"configs/offline_jax/{algo}.yaml", [
        f"dataset={data}", "batch_size=16", "device=cpu", "progress=false", "eval.enabled=false", "steps=20", "sync_every=2",
        "checkpoint_every=2", "target_update_interval=3", f"out_dir={out}", *extra,
    ], schema=JaxOfflineConfig)  # fmt: skip


def bc_config(data: Path, out: Path, *extra: str) -> JaxOfflineConfig:
    return run_config("bc", data, out, *extra)


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a msgpack model or checkpoint file, by path."""
    tree = serialization.msgpack_restore(path.read_bytes())
    flat = jax.tree_util.tree_flatten_with_path({k: v for k, v in tree.items() if k not in ("format", "meta")})[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def assert_same_arrays(a: Path, b: Path) -> int:
    ta, tb = arrays(a), arrays(b)
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not np.array_equal(ta[k], tb[k])]
    assert not differ, f"{len(differ)} of {len(ta)} arrays differ, e.g. {differ[:3]}"
    return len(ta)


# --- the loss is the torch agent's ------------------------------------------------------------------------


def dense(linear) -> dict:
    """torch ``nn.Linear`` -> TorchDense params (kernel is the transposed weight)."""
    return {"kernel": linear.weight.detach().numpy().T.copy(), "bias": linear.bias.detach().numpy().copy()}


def grid_encoder_params(encoder, observation_shape) -> dict:
    """torch MiniGridEncoder -> GridEncoder params: a 2x2 conv's (out, in, dy, dx) weight becomes rows ordered
    (dy, dx, in); the flatten is channel-first in torch, channel-last (H, W, C) here."""
    convs = [m for m in encoder.convs if isinstance(m, torch.nn.Conv2d)]
    params = {}
    for i, conv in enumerate(convs):
        w = conv.weight.detach().numpy()  # (out, in, 2, 2)
        params[f"conv{i}"] = {"kernel": w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]).copy(), "bias": conv.bias.detach().numpy().copy()}
    c, h, w = convs[-1].out_channels, observation_shape[1] - 3, observation_shape[2] - 3
    fc = encoder.fc.weight.detach().numpy()  # (128, C*H*W)
    params["fc"] = {"kernel": fc.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1).copy(), "bias": encoder.fc.bias.detach().numpy().copy()}
    return params


def torch_bc(seed: int = 3):
    from rlgen.agents.offline import build_agent
    from rlgen.config import OfflineConfig

    cfg = OfflineConfig.model_validate({"algo": "bc", "env": f"xland/{XLAND}", "dataset": "unused", "network": "minigrid_cnn", "seed": seed, "device": "cpu"})
    return build_agent(cfg, OBS_SHAPE, NUM_ACTIONS, "cpu", 1.0).algo


def test_bc_loss_equals_the_torch_bc_loss_on_a_fixed_batch_and_parameters():
    from d3rlpy.models.torch.imitators import compute_discrete_imitation_loss

    from rlgen.agents.offline_jax import core

    algo = torch_bc()
    policy = algo.impl._modules.imitator
    params = {"policy": {"params": {"encoder": grid_encoder_params(policy._encoder, OBS_SHAPE), "out": dense(policy._fc)}}}
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 10, (32, *OBS_SHAPE), dtype=np.uint8)
    actions = rng.integers(0, NUM_ACTIONS, 32)
    with torch.no_grad():
        want = compute_discrete_imitation_loss(policy, torch.as_tensor(obs).float(), torch.as_tensor(actions), beta=algo.config.beta).loss.item()
        want_log_probs = policy(torch.as_tensor(obs).float()).logits.numpy()  # torch's Categorical keeps normalized logits
    spec = core.Spec.from_config(bc_config(Path("d"), Path("o")), OBS_SHAPE, NUM_ACTIONS, 244)
    jax_algo = core.build(spec)
    loss, metrics = jax_algo.loss(params, {}, {"obs": obs, "actions": actions}, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(jax.nn.log_softmax(jax_algo.logits(params, obs))), want_log_probs, rtol=1e-5, atol=1e-5)
    assert want > 1.0  # an untrained policy's NLL over 6 actions: the comparison is not of two zeros
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(metrics["loss/imitation"]) == pytest.approx(want, rel=1e-5)


# --- seeds, resume, kills -----------------------------------------------------------------------------


def test_vmapped_seeds_differ_and_each_equals_that_seed_trained_alone(tmp_path, data):
    group = train_offline_jax(bc_config(data, tmp_path / "group", "seeds=[0,1,2]"))
    alone = train_offline_jax(bc_config(data, tmp_path / "alone", "seed=1", "seeds=null"))
    models = {s: group / f"seed_{s}" / jax_run.MODEL_FILE for s in (0, 1, 2)}
    # Same batches and init, so the same run; a batched matmul rounds differently from one of a single seed
    # (measured: <= 2e-8 after 20 updates), so equal to float tolerance, not bitwise.
    a1, solo = arrays(models[1]), arrays(alone / jax_run.MODEL_FILE)
    assert a1.keys() == solo.keys() and len(a1) == 10
    for k in a1:
        np.testing.assert_allclose(a1[k], solo[k], rtol=0, atol=1e-6, err_msg=k)
    a0, a2 = arrays(models[0]), arrays(models[2])
    assert all(np.abs(a0[k] - a1[k]).max() > 1e-3 and np.abs(a1[k] - a2[k]).max() > 1e-3 for k in a0 if a0[k].size > 6)
    ids = {json.loads((group / f"seed_{s}" / "run.json").read_text())["run_id"] for s in (0, 1, 2)}
    assert len(ids) == 3  # each seed is its own run


@pytest.mark.parametrize("algo", ["bc", "iql", "cql", "bcq"])
def test_resume_and_a_kill_before_the_commit_end_bit_identical_to_an_uninterrupted_run(tmp_path, data, monkeypatch, algo):
    straight = train_offline_jax(run_config(algo, data, tmp_path / "straight", "seeds=[0,1]"))
    train_offline_jax(run_config(algo, data, tmp_path / "resumed", "seeds=[0,1]", "steps=10"))
    resumed = train_offline_jax(run_config(algo, data, tmp_path / "resumed", "seeds=[0,1]"))  # 10 more from the step-10 checkpoint

    class Killed(BaseException):
        """Stands for SIGKILL: nothing catches it."""

    real_commit, calls = jax_run.commit, []

    def commit_then_die(out_dir, members, step, finished, history):
        calls.append(step)
        if step == 8:  # every seed's step-8 file is written, the commit is not
            raise Killed
        real_commit(out_dir, members, step, finished, history)

    import rlgen.agents.offline_jax.train as train_module

    monkeypatch.setattr(train_module, "commit", commit_then_die)
    with pytest.raises(Killed):
        train_offline_jax(run_config(algo, data, tmp_path / "killed", "seeds=[0,1]"))
    assert json.loads((tmp_path / "killed" / jax_run.COMMIT).read_text())["step"] == 6
    monkeypatch.setattr(train_module, "commit", real_commit)
    killed = train_offline_jax(run_config(algo, data, tmp_path / "killed", "seeds=[0,1]"))
    for s in (0, 1):
        for run in (resumed, killed):
            assert assert_same_arrays(straight / f"seed_{s}" / jax_run.step_file(20), run / f"seed_{s}" / jax_run.step_file(20)) > 20  # params, targets, Adam moments
            assert_same_arrays(straight / f"seed_{s}" / jax_run.MODEL_FILE, run / f"seed_{s}" / jax_run.MODEL_FILE)
        assert sorted(p.name for p in (killed / f"seed_{s}" / "checkpoints").iterdir()) == ["latest.json", Path(jax_run.step_file(20)).name]


def test_sigint_checkpoints_every_seed_at_once_and_the_resumed_run_is_bit_identical(tmp_path, data, monkeypatch):
    import os
    import signal

    from rlgen.agents.offline_jax.train import _Log
    from rlgen.errors import TrainingInterrupted

    extra = ("seeds=[0,1]", "steps=40", "checkpoint_every=4")  # checkpoints at 4, 8...: a stop at 6 is saved by the signal alone
    straight = train_offline_jax(bc_config(data, tmp_path / "straight", *extra))
    real_chunk = _Log.chunk

    def chunk_then_sigint(self, step, n, seconds, metrics):
        real_chunk(self, step, n, seconds, metrics)
        if step == 6:  # Ctrl-C arrives during the chunk that ends at update 6
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_Log, "chunk", chunk_then_sigint)
    with pytest.raises(TrainingInterrupted):
        train_offline_jax(bc_config(data, tmp_path / "stopped", *extra))
    state = json.loads((tmp_path / "stopped" / jax_run.COMMIT).read_text())
    assert (state["step"], state["finished"]) == (6, False)
    monkeypatch.setattr(_Log, "chunk", real_chunk)
    resumed = train_offline_jax(bc_config(data, tmp_path / "stopped", *extra))
    for s in (0, 1):
        assert_same_arrays(straight / f"seed_{s}" / jax_run.step_file(40), resumed / f"seed_{s}" / jax_run.step_file(40))


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_trains_seeds_and_evaluates_each_as_its_own_run(tmp_path, data, capsys):
    out = tmp_path / "run"
    args = [f"dataset={data}", "seeds=[0,1]", "steps=20", "batch_size=16", "sync_every=2", "checkpoint_every=2", "eval.enabled=false",
            "device=cpu", "progress=false", f"out_dir={out}"]  # fmt: skip
    assert main(["train", str(ROOT / "configs/offline_jax/bc.yaml"), *args]) == 0
    assert main(["evaluate", str(out), "--episodes", "3"]) == 0
    rows = {s: [json.loads(line) for line in (out / f"seed_{s}" / "results.jsonl").read_text().splitlines()] for s in (0, 1)}
    assert {s: [(r["agent"], r["which"]) for r in rows[s]][:2] for s in rows} == {s: [("bc_jax", "train"), ("bc_jax", "held_out")] for s in rows}
    assert len({r["run_id"] for s in rows for r in rows[s] if r["agent"] == "bc_jax"}) == 2
    assert all(len(r["returns"]) == 3 and all(150 <= lv < 200 for lv in r["levels"]) for s in rows for r in rows[s] if r["which"] == "held_out")
    assert "2 runs, one per seed" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0  # `rlgen report` unchanged: the seeds are its runs
    assert any(line.startswith("bc_jax") and line.split()[2] == "2" for line in capsys.readouterr().out.splitlines())


def test_an_image_dataset_is_refused_in_one_line_naming_the_torch_agent(tmp_path, capsys):
    rng = np.random.default_rng(0)
    eps = [Episode(rng.integers(0, 255, (3, 3, 64, 64), dtype=np.uint8), np.array([0, 1]), np.zeros(2, np.float32), np.array([False, True]),
                   np.zeros(2, bool), level=i) for i in range(4)]  # fmt: skip
    pixels = write_dataset(tmp_path / "pixels", eps, {"kind": "dataset", "env": "procgen/coinrun", "skill": "expert",
                                                      "observation_space": {"shape": [3, 64, 64], "dtype": "uint8"}, "action_space": {"n": 15},
                                                      "policies": [{"label": "expert"}]})  # fmt: skip
    code = main(["train", str(ROOT / "configs/offline_jax/bc.yaml"), f"dataset={pixels}", "batch_size=2", "device=cpu", "progress=false",
                 f"out_dir={tmp_path / 'out'}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "3x64x64 image observations" in err and "use the torch agent (algo: bc)" in err
    assert not (tmp_path / "out" / "group.json").exists()


# --- IQL and CQL: the torch agents' losses ------------------------------------------------------------


def transition_batch(n: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 10, (n, *OBS_SHAPE), dtype=np.uint8), "next_obs": rng.integers(0, 10, (n, *OBS_SHAPE), dtype=np.uint8),
            "actions": rng.integers(0, NUM_ACTIONS, n), "rewards": rng.random(n).astype(np.float32) * 2,
            "terminated": rng.random(n) < 0.3}  # fmt: skip


def perturbed(module, scale: float = 0.05, seed: int = 1):
    """``module`` with every weight moved by noise: a target that differs from its online network, so a loss that
    used the wrong one would not match."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return module


def d3rlpy_minibatch(batch: dict):
    """``transition_batch``'s arrays as the d3rlpy ``TorchMiniBatch`` the torch agents' ``update()`` builds."""
    from d3rlpy.torch_utility import TorchMiniBatch

    t = {k: torch.as_tensor(v) for k, v in batch.items()}
    b = len(batch["actions"])
    return TorchMiniBatch(observations=t["obs"].float(), actions=t["actions"].float().view(b, 1), rewards=t["rewards"].view(b, 1),
                          next_observations=t["next_obs"].float(), next_actions=torch.zeros(b, 1), returns_to_go=torch.zeros(b, 1),
                          terminals=t["terminated"].float().view(b, 1), intervals=torch.ones(b, 1), device="cpu")  # fmt: skip


def jax_spec(algo: str):
    from rlgen.agents.offline_jax import core

    cfg = load_config(ROOT / f"configs/offline_jax/{algo}.yaml", ["dataset=d", "env=xland/" + XLAND, "device=cpu", "gamma=0.9"], schema=JaxOfflineConfig)
    return core.Spec.from_config(cfg, OBS_SHAPE, NUM_ACTIONS, 244), cfg


def test_iql_losses_equal_the_torch_iql_losses_on_a_fixed_batch_and_parameters():
    from rlgen.agents.iql import DiscreteIQL
    from rlgen.agents.offline_jax import core

    spec, cfg = jax_spec("iql")
    torch_iql = DiscreteIQL(OBS_SHAPE, NUM_ACTIONS, encoder="minigrid_cnn", gamma=cfg.gamma, expectile=cfg.iql_expectile,
                            temperature=cfg.iql_temperature, seed=2)  # fmt: skip
    perturbed(torch_iql.q_targets)

    def head_params(net) -> dict:  # rlgen.agents.iql.EncoderHead -> networks.Head(hidden=256)
        return {"params": {"encoder": grid_encoder_params(net.encoder, OBS_SHAPE), "hidden": dense(net.head[0]), "out": dense(net.head[2])}}

    params = {"q1": head_params(torch_iql.q_nets[0]), "q2": head_params(torch_iql.q_nets[1]), "value": head_params(torch_iql.value),
              "policy": head_params(torch_iql.policy)}  # fmt: skip
    target = {"q1": head_params(torch_iql.q_targets[0]), "q2": head_params(torch_iql.q_targets[1])}
    batch = transition_batch()
    with torch.no_grad():
        want = {k: float(v) for k, v in torch_iql.loss(batch).items()}
    _, got = core.build(spec).loss(params, target, batch, jax.random.PRNGKey(0))
    assert want["loss/q"] > 0.1 and want["loss/v"] > 1e-4 and abs(want["loss/policy"]) > 0.1
    for k in ("loss/q", "loss/v", "loss/policy", "q/mean", "v/mean", "advantage/mean", "awr_weight/mean"):
        assert float(got[k]) == pytest.approx(want[k], rel=1e-5, abs=1e-6), k


def test_cql_loss_equals_d3rlpy_discrete_cql_as_rlgen_configures_it():
    from rlgen.agents.offline import build_agent
    from rlgen.agents.offline_jax import core
    from rlgen.config import OfflineConfig

    spec, cfg = jax_spec("cql")
    torch_cfg = OfflineConfig.model_validate({"algo": "cql", "env": f"xland/{XLAND}", "dataset": "unused", "network": "minigrid_cnn", "seed": 4,
                                              "device": "cpu", "gamma": cfg.gamma, "cql_alpha": cfg.cql_alpha})  # fmt: skip
    impl = build_agent(torch_cfg, OBS_SHAPE, NUM_ACTIONS, "cpu", 1.0).algo.impl
    q, q_target = impl._modules.q_funcs[0], perturbed(impl._modules.targ_q_funcs[0])
    params = {"q": {"params": {"encoder": grid_encoder_params(q._encoder, OBS_SHAPE), "out": dense(q._fc)}}}
    target = {"q": {"params": {"encoder": grid_encoder_params(q_target._encoder, OBS_SHAPE), "out": dense(q_target._fc)}}}
    batch = transition_batch(seed=1)
    tb = d3rlpy_minibatch(batch)
    with torch.no_grad():
        want = impl.compute_loss(tb, impl.compute_target(tb))
    total, got = core.build(spec).loss(params, target, batch, jax.random.PRNGKey(0))
    assert float(want.td_loss) > 0.01 and float(want.conservative_loss) > 0.01
    assert float(got["loss/td"]) == pytest.approx(float(want.td_loss), rel=1e-5)
    assert float(got["loss/conservative"]) == pytest.approx(float(want.conservative_loss), rel=1e-5)
    assert float(total) == pytest.approx(float(want.loss), rel=1e-5)


def test_bcq_loss_and_actions_equal_d3rlpy_discrete_bcq_as_rlgen_configures_it():
    from rlgen.agents.offline import build_agent
    from rlgen.agents.offline_jax import core
    from rlgen.config import OfflineConfig

    spec, cfg = jax_spec("bcq")
    torch_cfg = OfflineConfig.model_validate({"algo": "bcq", "env": f"xland/{XLAND}", "dataset": "unused", "network": "minigrid_cnn", "seed": 6,
                                              "device": "cpu", "gamma": cfg.gamma, "bcq_beta": cfg.bcq_beta, "bcq_threshold": cfg.bcq_threshold})  # fmt: skip
    impl = build_agent(torch_cfg, OBS_SHAPE, NUM_ACTIONS, "cpu", 1.0).algo.impl
    q, imitator = impl._modules.q_funcs[0], impl._modules.imitator
    assert imitator._encoder is q._encoder  # d3rlpy shares the encoder (share_encoder=True), as bcq_jax does
    q_target = perturbed(impl._modules.targ_q_funcs[0])
    with torch.no_grad():  # scores far from uniform: the threshold keeps some actions and drops others, Q's argmax varies
        imitator._fc.weight.mul_(200.0)
        q._fc.weight.mul_(20.0)

    def net(qf, fc) -> dict:
        return {"params": {"encoder": grid_encoder_params(qf._encoder, OBS_SHAPE), "q": dense(qf._fc), "imitator": dense(fc)}}

    params = {"net": net(q, imitator._fc)}
    target = {"net": net(q_target, imitator._fc)}  # the target's imitator head is never used
    batch = transition_batch(seed=2)
    t = {k: torch.as_tensor(v) for k, v in batch.items()}
    tb = d3rlpy_minibatch(batch)
    with torch.no_grad():
        want = impl.compute_loss(tb, impl.compute_target(tb))
        want_actions = impl.inner_predict_best_action(t["obs"].float()).numpy()
        log_probs = torch.log_softmax(imitator(t["obs"].float()).logits, dim=1)
        kept = (log_probs - log_probs.max(dim=1, keepdim=True).values > np.log(cfg.bcq_threshold)).sum(dim=1).numpy()
    algo = core.build(spec)
    total, got = algo.loss(params, target, batch, jax.random.PRNGKey(0))
    assert float(want.td_loss) > 0.01 and float(want.imitator_loss) > 0.1
    assert float(got["loss/td"]) == pytest.approx(float(want.td_loss), rel=1e-5)
    assert float(got["loss/imitator"]) == pytest.approx(float(want.imitator_loss), rel=1e-5)
    assert float(total) == pytest.approx(float(want.loss), rel=1e-5)
    assert (kept < NUM_ACTIONS).any() and (kept > 1).any()  # the threshold matters on this batch
    q_greedy = q(t["obs"].float()).q_value.detach().numpy().argmax(1)
    assert (want_actions != q_greedy).any(), kept  # ... and changes some actions from Q's argmax
    np.testing.assert_array_equal(np.asarray(jax.numpy.argmax(algo.logits(params, batch["obs"]), axis=-1)), want_actions)
    assert algo.greedy


def test_a_spec_saved_before_bcq_jax_existed_still_loads_and_a_wrong_one_is_refused():
    from rlgen.agents.offline_jax import core

    spec, _ = jax_spec("bc")
    old = {k: v for k, v in spec.to_dict().items() if not k.startswith("bcq_")}  # the model files of the previous version
    assert core.Spec.from_dict(old) == spec
    with pytest.raises(ValueError, match="unknown"):
        core.Spec.from_dict({**old, "surprise": 1})
    with pytest.raises(ValueError, match="batch_size"):
        core.Spec.from_dict({k: v for k, v in old.items() if k != "batch_size"})


def test_a_checkpoint_of_another_seed_or_agent_is_refused_naming_what_differs(tmp_path):
    import dataclasses

    from rlgen.agents.offline_jax import core
    from rlgen.agents.offline_jax.agent import read_checkpoint, write_checkpoint
    from rlgen.errors import RlgenError

    spec, _ = jax_spec("bc")
    path = write_checkpoint(tmp_path / "step_0000000002.msgpack", core.init_state(spec, 0), {"spec": spec.to_dict(), "target_return": 0.0, "seed": 0})
    assert read_checkpoint(path, spec, 0).step == 0
    with pytest.raises(RlgenError, match="holds seed 0, not this run's seed 1"):
        read_checkpoint(path, spec, 1)
    with pytest.raises(RlgenError, match=r"another agent than this run's seed 0 \(its batch_size differ\)"):
        read_checkpoint(path, dataclasses.replace(spec, batch_size=spec.batch_size + 1), 0)
