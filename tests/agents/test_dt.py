"""Decision Transformer: timesteps aligned between training and acting, and the reference's training
recipe (masked loss, minGPT's AdamW groups, gradient clipping), through the agent ``rlgen train`` builds."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.agents.offline import build_agent
from rlgen.config import OfflineConfig, load_config
from rlgen.data import Episode, load_dataset, write_dataset
from tests.agents.test_offline import bandit_dataset

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (3, 7, 7)
ENV = "minigrid/MiniGrid-Empty-5x5-v0"
MANIFEST = {"kind": "dataset", "env": ENV, "observation_space": {"shape": list(SHAPE), "dtype": "uint8"}, "action_space": {"n": 2},
            "policies": [{"label": "expert"}]}  # fmt: skip


def alternating_dataset(path: Path, episodes: int = 60, length: int = 12) -> Path:
    """Blank observations; the logged action at step t is t mod 2, so only the timestep tells it."""
    eps = []
    for i in range(episodes):
        terminated = np.zeros(length, bool)
        terminated[-1] = True
        eps.append(Episode(np.zeros((length + 1, *SHAPE), np.uint8), np.arange(length) % 2, np.ones(length, np.float32), terminated,
                           np.zeros(length, bool), level=i))  # fmt: skip
    write_dataset(path, eps, MANIFEST)
    return path


def varied_dataset(path: Path, rng: np.random.Generator, episodes: int = 80) -> Path:
    """Episodes of 1-6 steps with random observations, actions and rewards (windows get padding)."""
    eps = []
    for i in range(episodes):
        n = int(rng.integers(1, 7))
        terminated = np.zeros(n, bool)
        terminated[-1] = True
        eps.append(Episode(rng.integers(0, 4, (n + 1, *SHAPE), dtype=np.uint8), rng.integers(0, 2, n), rng.random(n).astype(np.float32),
                           terminated, np.zeros(n, bool), level=i))  # fmt: skip
    write_dataset(path, eps, MANIFEST)
    return path


def dt_config(dataset: Path, *extra: str) -> OfflineConfig:
    return load_config(ROOT / "configs/offline/dt.yaml", [
        f"dataset={dataset}", "network=minigrid_cnn", "batch_size=64", "learning_rate=0.001", "device=cpu", "progress=false",
        "n_layers=1", "n_heads=2", "embed_dim=32", *extra,
    ], schema=OfflineConfig)  # fmt: skip


def test_timestep_task_scores_one_through_the_evaluation_path(tmp_path):
    # Context 1 and blank images: the timestep embedding is the only input that tells t mod 2. With
    # d3rlpy's DT, acting numbered timesteps from 1 while training windows start at 0: training loss
    # reached 0.004 and act() scored 0.083 (every step wrong except the never-trained last timestep).
    ds = load_dataset(alternating_dataset(tmp_path / "alt"))
    agent = build_agent(dt_config(ds.root, "context_length=1"), SHAPE, 2, "cpu", target_return=12.0)
    rng = np.random.default_rng(0)
    for _ in range(250):
        losses = agent.update(ds.sample_windows(64, 1, rng))
    assert min(v for k, v in losses.items() if "grad" not in k) < 0.05, losses
    keys = list(range(8))
    agent.reset(keys)
    correct = []
    for t in range(12):  # as evaluate_on_levels drives an episodic agent: reset, then act/observe per step
        actions = agent.act(np.zeros((8, *SHAPE), np.uint8), deterministic=True, keys=keys)
        correct.append(actions == t % 2)
        agent.observe(keys, np.ones(8, np.float32))
    assert np.mean(correct) == 1.0


def named_groups(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[tuple[float, set[str]]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [(g["weight_decay"], {names[id(p)] for p in g["params"]}) for g in optimizer.param_groups]


def test_adamw_groups_decay_only_linear_and_conv_weights_as_the_reference(tmp_path, rng):
    ds = load_dataset(varied_dataset(tmp_path / "v", rng))
    impl = build_agent(dt_config(ds.root, "context_length=3"), SHAPE, 2, "cpu", target_return=1.0).impl
    model, opt = impl.model, impl.optimizer
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)
    groups = dict((wd, names) for wd, names in named_groups(opt, model))
    assert set(groups) == {0.1, 0.0}
    assert groups[0.1] | groups[0.0] == {n for n, _ in model.named_parameters()} and not groups[0.1] & groups[0.0]
    modules = dict(model.named_modules())
    for name in groups[0.1]:  # decayed: matmul weights
        owner, _, leaf = name.rpartition(".")
        assert leaf == "in_proj_weight" or (leaf == "weight" and isinstance(modules[owner], (nn.Linear, nn.Conv2d))), name
    for name in groups[0.0]:  # not decayed: biases, LayerNorm and embedding weights
        owner, _, leaf = name.rpartition(".")
        assert leaf.endswith("bias") or isinstance(modules[owner], (nn.LayerNorm, nn.Embedding)), name
    assert {"return_embed.weight", "obs_embed.weight", "action_head.weight"} <= groups[0.1]
    assert {"timestep_embed.weight", "action_embed.weight", "embed_norm.weight", "action_head.bias"} <= groups[0.0]


def test_loss_is_the_cross_entropy_of_real_steps_only(tmp_path, rng):
    ds = load_dataset(varied_dataset(tmp_path / "v", rng))
    windows = ds.sample_windows(32, 4, rng)
    pad = ~windows["mask"]
    assert pad.any()
    changed = {**windows, "actions": np.where(pad, 1 - windows["actions"], windows["actions"]),
               "returns_to_go": np.where(pad, 9.0, windows["returns_to_go"]).astype(np.float32),
               "obs": np.where(pad[:, :, None, None, None], 3, windows["obs"]).astype(np.uint8)}  # fmt: skip
    # Two agents built alike (same weights, same dropout draws): padding content must not change the
    # update. The loss d3rlpy's DT used averaged over padded steps too, with their label 0.
    a = build_agent(dt_config(ds.root, "context_length=4"), SHAPE, 2, "cpu", target_return=1.0)
    first = a.update(windows)
    b = build_agent(dt_config(ds.root, "context_length=4"), SHAPE, 2, "cpu", target_return=1.0)
    assert b.update(changed) == first
    for (name, p), q in zip(a.impl.model.named_parameters(), b.impl.model.parameters()):
        assert torch.equal(p, q), name
    # And it is the plain mean over real steps of -log p(a_t), computed here step by step.
    impl = a.impl
    impl.model.eval()
    with torch.no_grad():
        logits = impl.model(torch.as_tensor(windows["obs"]), torch.as_tensor(windows["actions"]), torch.as_tensor(windows["timesteps"]),
                            torch.as_tensor(windows["mask"]), torch.as_tensor(windows["returns_to_go"]))  # fmt: skip
        terms = [-F.log_softmax(logits[i, t], dim=-1)[windows["actions"][i, t]] for i, t in zip(*np.nonzero(windows["mask"]))]
        torch.testing.assert_close(impl.loss(windows), torch.stack(terms).mean())


def test_gradient_norm_is_clipped_at_one(tmp_path, rng):
    ds = load_dataset(bandit_dataset(tmp_path / "b", 64, p_correct=1.0))  # 3 actions, marked images
    agent = build_agent(dt_config(ds.root, "context_length=4"), SHAPE, 3, "cpu", target_return=1.0)
    stats = agent.update(ds.sample_windows(64, 4, rng))
    assert stats["grad_norm"] > 1.5  # the norm before clipping (a statistic, not a loss: train/grad_norm)
    grads = [p.grad for p in agent.impl.model.parameters() if p.grad is not None]
    assert float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) == pytest.approx(1.0, rel=1e-4)


def test_acting_batches_episodes_with_their_own_returns(tmp_path, rng):
    # All rows in one forward pass, each with its own history: the same as acting one key at a time.
    ds = load_dataset(varied_dataset(tmp_path / "v", rng))
    agent = build_agent(dt_config(ds.root, "context_length=3"), SHAPE, 2, "cpu", target_return=2.0)
    for _ in range(5):
        agent.update(ds.sample_windows(16, 3, rng))
    obs = rng.integers(0, 4, (5, 3, *SHAPE), dtype=np.uint8)  # 5 steps of 3 episodes
    rewards = rng.random((5, 3)).astype(np.float32)
    logits: list[torch.Tensor] = []
    agent.impl.model.action_head.register_forward_hook(lambda m, a, out: logits.append(out[:, -1].detach().clone()))
    agent.reset([0, 1, 2])
    for t in range(5):
        agent.act(obs[t], deterministic=True, keys=[0, 1, 2])
        agent.observe([0, 1, 2], rewards[t])
    together = torch.stack(logits)  # (5, 3, A)
    logits.clear()
    for k in range(3):
        agent.reset([k])
        for t in range(5):
            agent.act(obs[t, k : k + 1], deterministic=True, keys=[k])
            agent.observe([k], rewards[t, k : k + 1])
    alone = torch.cat(logits).reshape(3, 5, -1).transpose(0, 1)
    torch.testing.assert_close(together, alone)
    assert agent.impl._history[2]["return_left"] == pytest.approx(2.0 - float(rewards[:, 2].sum()))
    assert list(agent.impl._history[2]["rtg"]) == pytest.approx([2.0 - float(rewards[:t, 2].sum()) for t in (2, 3, 4)])
