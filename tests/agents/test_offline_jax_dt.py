"""dt_jax and bct_jax against the torch DT and BCT (rlgen.agents.transformer): with the torch weights mapped
onto the flax networks, the loss on a fixed batch of windows, one AdamW update (clipping, weight-decay mask),
and the acting windows (0-based timesteps, returns-to-go lowered by each reward) are the torch agent's; then a
real vmapped run trains, resumes bit-identically, and evaluates per seed through `rlgen evaluate`."""

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

from rlgen.agents.offline_jax import core  # noqa: E402
from rlgen.config import load_config  # noqa: E402
from rlgen.config.offline_jax import JaxOfflineConfig  # noqa: E402
from tests.agents.test_offline_jax import NUM_ACTIONS, OBS_SHAPE, ROOT, XLAND, assert_same_arrays, dense, grid_encoder_params, xland_dataset  # noqa: E402

# A tiny transformer: the same code paths as the reference size, compiled in seconds.
SIZE = {"context_length": 4, "n_layers": 2, "n_heads": 2, "embed_dim": 16}
MAX_TIMESTEP = 30


def jax_config(algo: str, *extra: str) -> JaxOfflineConfig:
    return load_config(ROOT / f"configs/offline_jax/{algo}.yaml", ["dataset=d", f"env=xland/{XLAND}", "device=cpu", "progress=false",
                       *(f"{k}={v}" for k, v in SIZE.items()), *extra], schema=JaxOfflineConfig)  # fmt: skip


def torch_agent(conditioned: bool, seed: int = 5, target_return: float = 3.0):
    from rlgen.agents.transformer import CausalTransformerAgent

    return CausalTransformerAgent(OBS_SHAPE, NUM_ACTIONS, encoder="minigrid_cnn", max_timestep=MAX_TIMESTEP, seed=seed, return_conditioned=conditioned,
                                  target_return=target_return, **SIZE)  # fmt: skip


def layer_norm(norm) -> dict:
    return {"scale": norm.weight.detach().numpy().copy(), "bias": norm.bias.detach().numpy().copy()}


def flax_params(model) -> dict:
    """torch CausalTransformer -> the flax CausalTransformer's variables (names in rlgen.agents.offline_jax.networks)."""
    p = {"encoder": grid_encoder_params(model.encoder, OBS_SHAPE), "obs_embed": dense(model.obs_embed),
         "action_embed": {"embedding": model.action_embed.weight.detach().numpy().copy()},
         "timestep_embed": {"embedding": model.timestep_embed.weight.detach().numpy().copy()},
         "embed_norm": layer_norm(model.embed_norm), "final_norm": layer_norm(model.transformer.norm), "action_head": dense(model.action_head)}  # fmt: skip
    if model.return_conditioned:
        p["return_embed"] = dense(model.return_embed)
    for i, layer in enumerate(model.transformer.layers):
        attn = layer.self_attn
        p[f"layer{i}"] = {"norm1": layer_norm(layer.norm1), "norm2": layer_norm(layer.norm2), "linear1": dense(layer.linear1), "linear2": dense(layer.linear2),
                          "self_attn": {"in_proj": {"kernel": attn.in_proj_weight.detach().numpy().T.copy(), "bias": attn.in_proj_bias.detach().numpy().copy()},
                                        "out_proj": dense(attn.out_proj)}}  # fmt: skip
    return {"model": {"params": p}}


def windows(batch: int = 12, seed: int = 0) -> dict:
    """Windows as the samplers give them: left padding (mask False, zeros) on some rows, 0-based timesteps."""
    rng = np.random.default_rng(seed)
    k = SIZE["context_length"]
    real = rng.integers(1, k + 1, batch)  # real steps per row
    mask = np.arange(k)[None, :] >= (k - real)[:, None]
    start = rng.integers(0, 20, batch)
    timesteps = np.where(mask, start[:, None] + np.arange(k)[None, :] - (k - real)[:, None], 0)
    obs = rng.integers(0, 10, (batch, k, *OBS_SHAPE), dtype=np.uint8) * mask[:, :, None, None, None].astype(np.uint8)
    return {"obs": obs, "actions": rng.integers(0, NUM_ACTIONS, (batch, k)) * mask, "timesteps": timesteps,
            "returns_to_go": (rng.random((batch, k)) * 3).astype(np.float32) * mask, "mask": mask}  # fmt: skip


@pytest.mark.parametrize("algo", ["dt", "bct"])
def test_the_loss_and_one_adamw_update_equal_the_torch_agents(algo):
    agent = torch_agent(conditioned=algo == "dt")
    params = flax_params(agent.model)
    spec = core.Spec.from_config(jax_config(algo), OBS_SHAPE, NUM_ACTIONS, MAX_TIMESTEP)
    jax_algo = core.build(spec)
    w = windows()
    assert not w["mask"].all() and w["mask"].any(axis=1).all()  # padding is exercised, every row has a real step
    agent.model.eval()  # dropout off on both sides (key None)
    with torch.no_grad():
        want = float(agent.loss(w))
    got, metrics = jax_algo.loss(params, {}, w, None)
    assert want > 1.0  # an untrained policy over 6 actions: not a comparison of two zeros
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(metrics["loss/dt" if algo == "dt" else "loss/bc"]) == pytest.approx(want, rel=1e-5)

    # Two updates (the second shows the gradient clipping, which Adam's first step is blind to): torch's with
    # every dropout at 0 vs optax's on the deterministic loss's gradient.
    for m in agent.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    lr = 0.05  # a step large enough to show a wrong weight-decay mask (lr x 0.1 x |w|)
    for group in agent.optimizer.param_groups:
        group["lr"] = lr
    opt = core.build(core.Spec.from_config(jax_config(algo, f"learning_rate={lr}"), OBS_SHAPE, NUM_ACTIONS, MAX_TIMESTEP)).optimizer
    grad = jax.jit(jax.grad(lambda p, batch: jax_algo.loss(p, {}, batch, None)[0]))
    step = jax.jit(lambda grads, opt_state, p: opt.update(grads, opt_state, p))
    new, opt_state = params, opt.init(params)
    for i, batch in enumerate((w, windows(seed=1))):
        grads = grad(new, batch)
        if i == 1:
            assert float(jax.numpy.sqrt(sum((g**2).sum() for g in jax.tree_util.tree_leaves(grads)))) > 1.0  # clipped at 1.0
        updates, opt_state = step(grads, opt_state, new)
        new = jax.tree_util.tree_map(lambda p, u: p + u, new, updates)
        agent.update(batch)
    flat_got = dict(jax.tree_util.tree_flatten_with_path(new)[0])
    flat_want = dict(jax.tree_util.tree_flatten_with_path(flax_params(agent.model))[0])
    before = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    assert flat_got.keys() == flat_want.keys()
    # Adam divides by sqrt(v): where a gradient entry is near zero (a dead unit), float rounding moves its step by
    # a few thousandths of lr; a wrong decay mask or clip moves whole leaves by far more (lr x 0.1 x |w|).
    d = SIZE["embed_dim"]
    for k, v in flat_want.items():
        got_k = np.asarray(flat_got[k])
        if "in_proj" in jax.tree_util.keystr(k) and "bias" in jax.tree_util.keystr(k):
            # the key bias adds q . b_k to every score of a query, which softmax ignores: its gradient is 0 up to
            # rounding, so its Adam step is rounding noise divided by rounding noise on either side
            got_k, v = np.r_[got_k[:d], got_k[2 * d :]], np.r_[v[:d], v[2 * d :]]
        off = np.abs(got_k - v) > 1e-3 * lr + 1e-4 * np.abs(v)
        assert off.mean() <= 1e-3, f"{jax.tree_util.keystr(k)}: {off.sum()} of {off.size} entries differ"
        np.testing.assert_allclose(got_k, v, rtol=0, atol=1e-2 * lr, err_msg=jax.tree_util.keystr(k))
    assert sum(not np.array_equal(np.asarray(before[k]), v) for k, v in flat_want.items()) > 0.9 * len(flat_want)  # nearly every leaf moved


def test_acting_windows_have_0_based_timesteps_and_returns_to_go_lowered_by_rewards_and_match_torch_logits():
    """On device (evaluate_jax's carry) and on the host (act with episode keys) alike."""
    from rlgen.agents.offline_jax.agent import JaxOfflineAgent
    from rlgen.agents.offline_jax.dt import episodic_policy
    from rlgen.agents.offline_jax.networks import transformer

    target = 3.0
    agent = torch_agent(conditioned=True, target_return=target)
    spec = core.Spec.from_config(jax_config("dt"), OBS_SHAPE, NUM_ACTIONS, MAX_TIMESTEP)
    jagent = JaxOfflineAgent(spec, flax_params(agent.model), target_return=target)
    f = jagent.jax_policy()
    act, _ = episodic_policy(spec)
    rng = np.random.default_rng(1)
    carry = f.init(f.params, 2)
    k = SIZE["context_length"]
    seen_obs, seen_actions, rewards_so_far = [], [], np.zeros(2, np.float32)
    model = transformer(NUM_ACTIONS, SIZE["n_layers"], SIZE["n_heads"], SIZE["embed_dim"], 0.1, MAX_TIMESTEP, True)
    agent.model.eval()
    for t in range(k + 3):  # past the context length: the window slides
        obs = rng.integers(0, 10, (2, *OBS_SHAPE), dtype=np.uint8)
        actions, carry = act(f.params, carry, obs, jax.random.split(jax.random.PRNGKey(t), 2), True)
        seen_obs.append(obs)
        seen_actions.append(np.asarray(actions))
        n = min(t + 1, k)
        steps = np.arange(t + 1 - n, t + 1)
        np.testing.assert_array_equal(np.asarray(carry["timesteps"])[:, k - n :], np.tile(steps, (2, 1)))  # 0-based, the newest is t
        rtg_now = target - rewards_so_far
        np.testing.assert_allclose(np.asarray(carry["returns_to_go"])[:, -1], rtg_now, rtol=1e-6)
        # torch's forward on the same window (the definition of the training windows) gives the same logits
        win_obs = np.stack(seen_obs[-n:], axis=1)
        win_actions = np.stack(seen_actions[-n:], axis=1)
        win_rtg = np.asarray(carry["returns_to_go"])[:, k - n :]
        with torch.no_grad():
            want = agent.model(torch.as_tensor(win_obs), torch.as_tensor(win_actions), torch.as_tensor(np.tile(steps, (2, 1))),
                               torch.ones(2, n, dtype=torch.bool), torch.as_tensor(win_rtg))[:, -1].numpy()  # fmt: skip
        got = np.asarray(model.apply(jagent.params["model"], carry["obs"], carry["actions"], carry["timesteps"], carry["mask"], carry["returns_to_go"]))[:, -1]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(actions), want.argmax(-1))
        # the host-side acting of evaluations on other suites (a carry per episode key) takes the same actions
        np.testing.assert_array_equal(jagent.act(obs, deterministic=True, keys=[10, 11]), want.argmax(-1))
        r = rng.random(2).astype(np.float32)
        carry = f.observe(carry, r)
        jagent.observe([10, 11], r)
        rewards_so_far += r


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return xland_dataset(tmp_path_factory.mktemp("dtdata") / "d")


def run_config(algo: str, data: Path, out: Path, *extra: str) -> JaxOfflineConfig:
    return load_config(ROOT / f"configs/offline_jax/{algo}.yaml", [
        f"dataset={data}", "batch_size=8", "device=cpu", "progress=false", "eval.enabled=false", "steps=6", "sync_every=2", "checkpoint_every=2",
        f"out_dir={out}", *(f"{k}={v}" for k, v in SIZE.items()), *extra,
    ], schema=JaxOfflineConfig)  # fmt: skip


@pytest.mark.parametrize("algo", ["dt", "bct"])
def test_a_vmapped_run_resumes_bit_identical_and_evaluates_each_seed(tmp_path, data, monkeypatch, capsys, algo):
    from rlgen.agents.offline_jax.train import train_offline_jax
    from rlgen.cli import main

    whole = train_offline_jax(run_config(algo, data, tmp_path / "whole", "seeds=[0,1]"))
    # the same run stopped after 2 updates (as a kill after the first commit leaves it), then resumed to 6
    part = tmp_path / "part"
    train_offline_jax(run_config(algo, data, part, "seeds=[0,1]", "steps=2"))
    train_offline_jax(run_config(algo, data, part, "seeds=[0,1]"))
    for s in (0, 1):
        assert_same_arrays(whole / f"seed_{s}" / "model.msgpack", part / f"seed_{s}" / "model.msgpack")
    capsys.readouterr()
    assert main(["evaluate", str(whole), "--episodes", "4", "--which", "held_out", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for s in (0, 1):
        rows = (whole / f"seed_{s}" / "results.jsonl").read_text().splitlines()
        assert rows and '"held_out"' in rows[-1], out


@pytest.mark.parametrize("algo", ["bc", "dt"])
def test_off_xland_a_sampling_jax_agent_draws_evaluations_uniforms_so_num_envs_changes_nothing(algo):
    # MiniGrid's symbolic view is evaluated on the host (act with keys): without the per-episode uniforms the sampled
    # actions came from the agent's one generator, in an order that depends on how many episodes run at once.
    from rlgen.agents.offline_jax.agent import JaxOfflineAgent
    from rlgen.envs import LevelSplit
    from rlgen.evaluation import evaluate_on_levels

    split = LevelSplit.minigrid("empty-5x5", num_levels=10)
    cfg = load_config(ROOT / f"configs/offline_jax/{algo}.yaml", ["dataset=d", "env=minigrid/empty-5x5", "device=cpu",
                      *(f"{k}={v}" for k, v in SIZE.items())], schema=JaxOfflineConfig)  # fmt: skip
    spec = core.Spec.from_config(cfg, (3, 7, 7), 7, MAX_TIMESTEP)
    params = core.init_state(spec, 3).params
    results = [evaluate_on_levels(JaxOfflineAgent(spec, params, target_return=1.0, seed=0), split, "held_out", episodes=6, seed=4, num_envs=n)
               for n in (1, 3)]  # fmt: skip
    assert len(set(results[0].lengths.tolist())) > 1  # sampled episodes differ from one another: the draws matter
    np.testing.assert_array_equal(results[0].lengths, results[1].lengths)
    np.testing.assert_allclose(results[0].returns, results[1].returns)
