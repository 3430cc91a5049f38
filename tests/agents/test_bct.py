import numpy as np
import pytest
import torch

from rlgen.agents.bct import BCTransformer
from rlgen.data import Episode, load_dataset, write_dataset

OBS_SHAPE = (3, 7, 7)
NUM_ACTIONS = 3
CONTEXT = 4
MANIFEST = {
    "kind": "dataset", "env": "minigrid/synthetic", "skill": "expert",
    "observation_space": {"shape": list(OBS_SHAPE), "dtype": "uint8"}, "action_space": {"n": NUM_ACTIONS},
    "policies": [{"label": "expert"}],
}  # fmt: skip




def make_obs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random small-int images (0-3) whose pixel (0, 0) is zero in two channels and 10 in the
    third; that channel is the expert's action. Returns obs ``(n, 3, 7, 7)`` uint8 and the action
    ``(n,)``."""
    obs = rng.integers(0, 4, (n, *OBS_SHAPE), dtype=np.uint8)
    best = rng.integers(0, NUM_ACTIONS, n)
    obs[:, :, 0, 0] = 0
    obs[np.arange(n), best, 0, 0] = 10
    return obs, best


def make_dataset(path, rng: np.random.Generator, episodes: int = 300):
    """Expert episodes of 2-12 steps: the logged action is always the marked channel."""
    eps = []
    for _ in range(episodes):
        length = int(rng.integers(2, 13))
        obs, best = make_obs(rng, length + 1)
        terminated = np.zeros(length, dtype=bool)
        terminated[-1] = True
        eps.append(Episode(obs, best[:length], np.ones(length, np.float32), terminated, np.zeros(length, dtype=bool), level=0))
    write_dataset(path, eps, MANIFEST)
    return load_dataset(path)


def small_bct(**kwargs) -> BCTransformer:
    defaults = dict(encoder="minigrid_cnn", context_length=CONTEXT, n_layers=2, n_heads=2, embed_dim=32)
    return BCTransformer(OBS_SHAPE, NUM_ACTIONS, **{**defaults, **kwargs})


@pytest.fixture
def dataset(tmp_path, rng):
    return make_dataset(tmp_path / "ds", rng)


def run_episodes(agent: BCTransformer, observations: np.ndarray, keys: list[int]) -> np.ndarray:
    """``observations`` ``(T, B, C, H, W)``: B episodes stepped together. Returns actions ``(T, B)``."""
    agent.reset(keys)
    out = []
    for obs in observations:
        out.append(agent.act(obs, deterministic=True, keys=keys))
        agent.observe(keys, np.zeros(len(keys), dtype=np.float32))
    return np.stack(out)


def test_updates_lower_the_loss_on_fixed_windows(dataset, rng):
    agent = small_bct(seed=1, dropout=0.0, learning_rate=1e-3)
    windows = dataset.sample_windows(32, CONTEXT, rng)
    assert (~windows["mask"]).any()  # some windows are left-padded
    with torch.no_grad():
        before = float(agent.loss(windows))
    for _ in range(60):
        stats = agent.update(windows)
    assert isinstance(stats["loss/bc"], float)
    with torch.no_grad():
        after = float(agent.loss(windows))
    assert after < 0.5 * before, (before, after)
    assert agent.num_updates == 60


def test_loss_ignores_padded_steps(dataset, rng):
    agent = small_bct(seed=1, dropout=0.0)
    windows = dataset.sample_windows(32, CONTEXT, rng)
    pad = ~windows["mask"]
    assert pad.any()
    changed = {**windows, "actions": np.where(pad, (windows["actions"] + 1) % NUM_ACTIONS, windows["actions"])}
    changed["obs"] = np.where(pad[:, :, None, None, None], 7, windows["obs"]).astype(np.uint8)
    with torch.no_grad():
        torch.testing.assert_close(agent.loss(changed), agent.loss(windows))


def test_padding_is_invisible_to_real_steps(rng):
    # The same 2-step episode left-padded to 2 or 4 steps, with different junk in the padding:
    # the real steps' logits must not change.
    agent = small_bct(seed=2)
    agent.model.eval()
    obs, best = make_obs(rng, 2)
    junk, _ = make_obs(rng, 2)
    short = (torch.as_tensor(obs[None]), torch.as_tensor(best[None]), torch.tensor([[5, 6]]), torch.tensor([[True, True]]))
    padded = (
        torch.as_tensor(np.concatenate([junk, obs])[None]),
        torch.as_tensor(np.concatenate([[2, 1], best])[None]),
        torch.tensor([[0, 0, 5, 6]]),
        torch.tensor([[False, False, True, True]]),
    )
    with torch.no_grad():
        torch.testing.assert_close(agent.model(*padded)[:, 2:], agent.model(*short))
        assert not torch.isnan(agent.model(*padded)).any()


def test_prediction_does_not_see_the_current_or_future_actions(rng):
    agent = small_bct(seed=3)
    agent.model.eval()
    obs, _ = make_obs(rng, CONTEXT)
    args = dict(obs=torch.as_tensor(obs[None]), timesteps=torch.arange(CONTEXT)[None], mask=torch.ones(1, CONTEXT, dtype=torch.bool))
    a = torch.tensor([[0, 1, 2, 0]])
    b = torch.tensor([[0, 1, 0, 2]])  # differs from step 2 on
    with torch.no_grad():
        la, lb = agent.model(actions=a, **args), agent.model(actions=b, **args)
    torch.testing.assert_close(la[:, :3], lb[:, :3])  # a_t reaches only the predictions after step t
    assert not torch.allclose(la[:, 3], lb[:, 3])  # ... and does reach those


def record_logits(agent: BCTransformer) -> list[torch.Tensor]:
    """Collects the logits ``act`` decides from, ``(B, A)`` per call."""
    calls: list[torch.Tensor] = []
    agent.model.action_head.register_forward_hook(lambda module, args, out: calls.append(out[:, -1].detach().clone()))
    return calls


def test_act_keeps_a_separate_history_per_key(rng):
    agent = small_bct(seed=4, n_heads=4)
    logits = record_logits(agent)
    observations, _ = make_obs(rng, 2 * 7)
    observations = observations.reshape(7, 2, *OBS_SHAPE)  # 7 steps of 2 episodes
    together = run_episodes(agent, observations, keys=[10, 11])
    logits_together = torch.stack(logits)  # (7, 2, A)
    logits.clear()
    alone = np.stack([run_episodes(agent, observations[:, i : i + 1], keys=[k])[:, 0] for i, k in enumerate([10, 11])], axis=1)
    logits_alone = torch.cat(logits).reshape(2, 7, -1).transpose(0, 1)  # (7, 2, A)
    np.testing.assert_array_equal(together, alone)
    torch.testing.assert_close(logits_together, logits_alone)
    # Interleaved calls, one key at a time, in the other order, give the same too.
    agent.reset([10, 11])
    logits.clear()
    interleaved = np.zeros_like(together)
    for t in range(7):
        interleaved[t, 1] = agent.act(observations[t, 1:2], deterministic=True, keys=[11])[0]
        interleaved[t, 0] = agent.act(observations[t, 0:1], deterministic=True, keys=[10])[0]
    np.testing.assert_array_equal(interleaved, together)
    torch.testing.assert_close(torch.cat(logits).reshape(7, 2, -1).flip(1), logits_together)
    # The history matters (so the checks above can fail): episode 10 from step 0 differs from
    # its last observation alone at step 0.
    agent.reset([10])
    logits.clear()
    agent.act(observations[-1, 0:1], keys=[10])
    assert not torch.allclose(logits[0][0], logits_together[-1, 0], atol=1e-4)
    # The histories are kept for the last context_length steps, with the actions taken.
    agent.reset([11])
    run_episodes(agent, observations[:, 1:2], keys=[11])
    history = agent._history[11]
    assert len(history["tokens"]) == CONTEXT and list(history["actions"]) == together[-CONTEXT:, 1].tolist()
    assert history["next_t"] == 7


def test_act_builds_the_same_window_as_the_dataset(rng):
    # After 6 steps with a context of 4, act decides from steps 2-5: their observations, the
    # actions it took at steps 2-4 (step 5's is unknown), timesteps 2-5, no padding.
    agent = small_bct(seed=9)
    logits = record_logits(agent)
    obs = make_obs(rng, 6)[0]
    actions = run_episodes(agent, obs[:, None], keys=[3])[:, 0]
    window = (
        torch.as_tensor(obs[None, 2:]),
        torch.as_tensor(np.concatenate([actions[2:5], [0]])[None]),
        torch.arange(2, 6)[None],
        torch.ones(1, 4, dtype=torch.bool),
    )
    with torch.no_grad():
        torch.testing.assert_close(agent.model(*window)[:, -1], logits[5])
    # Early steps are left-padded: step 1 decides from steps 0-1.
    window = (torch.as_tensor(obs[None, :2]), torch.as_tensor([[actions[0], 0]]), torch.arange(2)[None], torch.ones(1, 2, dtype=torch.bool))
    with torch.no_grad():
        torch.testing.assert_close(agent.model(*window)[:, -1], logits[1])


def test_act_without_keys_is_a_first_step_and_remembers_nothing(rng):
    agent = small_bct(seed=5)
    obs, _ = make_obs(rng, 6)
    without = agent.act(obs, deterministic=True)
    assert without.shape == (6,) and without.dtype == np.int64 and agent._history == {}
    np.testing.assert_array_equal(without, agent.act(obs, deterministic=True, keys=range(6)))
    sampled = agent.act(obs, deterministic=False, keys=range(6))
    assert ((sampled >= 0) & (sampled < NUM_ACTIONS)).all()
    with pytest.raises(ValueError):
        agent.act(obs, keys=[0, 0, 1, 2, 3, 4])


def test_timesteps_beyond_max_timestep_are_clamped(rng):
    agent = small_bct(max_timestep=3, dropout=0.0)
    agent.reset([0])
    actions = [int(agent.act(obs[None], deterministic=True, keys=[0])[0]) for obs in make_obs(rng, 6)[0]]  # steps 0..5, a 3-entry table
    assert all(0 <= a < NUM_ACTIONS for a in actions)
    agent.model.eval()
    obs = torch.as_tensor(make_obs(rng, 1)[0][None])  # (1, 1, C, H, W)
    with torch.no_grad():
        at = lambda t: agent.model(obs, torch.zeros(1, 1, dtype=torch.long), torch.full((1, 1), t), torch.ones(1, 1, dtype=torch.bool))  # noqa: E731
        assert torch.equal(at(5), at(2)) and torch.equal(at(1000), at(2))  # later steps share the table's last entry
        assert not torch.equal(at(1), at(2))


def test_state_dict_round_trip_gives_same_actions_and_resumes_identically(dataset, rng):
    agent = small_bct(seed=6, dropout=0.0)
    for _ in range(3):
        agent.update(dataset.sample_windows(16, CONTEXT, rng))
    fresh = small_bct(seed=7, dropout=0.0)
    observations = make_obs(np.random.default_rng(8), 6 * 5)[0].reshape(6, 5, *OBS_SHAPE)
    assert not torch.equal(fresh.model.action_head.weight, agent.model.action_head.weight)
    fresh.load_state_dict(agent.state_dict())
    np.testing.assert_array_equal(run_episodes(fresh, observations, list(range(5))), run_episodes(agent, observations, list(range(5))))
    np.testing.assert_array_equal(fresh.act(observations[0]), agent.act(observations[0]))  # same sampler state
    # (AdamW without its moments would move each weight by ~learning_rate: far outside the tolerance.)
    windows = dataset.sample_windows(16, CONTEXT, rng)
    assert fresh.update(windows) == pytest.approx(agent.update(windows), rel=1e-5)
    theirs = fresh.state_dict()["model"]
    for name, tensor in agent.state_dict()["model"].items():
        torch.testing.assert_close(theirs[name], tensor, msg=name)


def test_learns_the_expert_action_and_acts_episodically(tmp_path, rng):
    dataset = make_dataset(tmp_path / "ds", rng)
    torch.manual_seed(0)  # dropout
    agent = small_bct(seed=0, learning_rate=1e-3)
    for _ in range(150):
        agent.update(dataset.sample_windows(32, CONTEXT, rng))
    observations, best = make_obs(np.random.default_rng(123), 10 * 16)  # fresh: 10 steps of 16 episodes
    actions = run_episodes(agent, observations.reshape(10, 16, *OBS_SHAPE), keys=list(range(100, 116)))
    accuracy = float((actions.reshape(-1) == best).mean())
    assert accuracy >= 0.9, accuracy
