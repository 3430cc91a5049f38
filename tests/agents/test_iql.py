import numpy as np
import pytest
import torch

from rlgen.agents.iql import DiscreteIQL
from rlgen.data import Episode, load_dataset, write_dataset

OBS_SHAPE = (3, 7, 7)
NUM_ACTIONS = 3
MANIFEST = {
    "kind": "dataset", "env": "minigrid/synthetic", "skill": "mixed",
    "observation_space": {"shape": list(OBS_SHAPE), "dtype": "uint8"}, "action_space": {"n": NUM_ACTIONS},
    "policies": [{"label": "mixed"}],
}  # fmt: skip


def make_obs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random small-int images (0-3) whose pixel (0, 0) is zero in two channels and 10 in the
    third; that channel is the rewarded action. Returns obs ``(n, 3, 7, 7)`` uint8 and the
    rewarded action ``(n,)``. (A marker well above the noise keeps the test fast; with a marker of
    1 the CNN needs many more steps to find it.)"""
    obs = rng.integers(0, 4, (n, *OBS_SHAPE), dtype=np.uint8)
    best = rng.integers(0, NUM_ACTIONS, n)
    obs[:, :, 0, 0] = 0
    obs[np.arange(n), best, 0, 0] = 10
    return obs, best


def make_dataset(path, rng: np.random.Generator, episodes: int = 400, length: int = 5, p_correct: float = 0.2):
    """Episodes where the logged action is the rewarded one only with probability ``p_correct``:
    each wrong action is more frequent than the right one, so copying the data fails and the
    agent has to use the rewards."""
    eps = []
    for _ in range(episodes):
        obs, best = make_obs(rng, length + 1)
        wrong = (best[:length] + rng.integers(1, NUM_ACTIONS, length)) % NUM_ACTIONS
        actions = np.where(rng.random(length) < p_correct, best[:length], wrong)
        rewards = (actions == best[:length]).astype(np.float32)
        terminated = np.zeros(length, dtype=bool)
        terminated[-1] = True
        eps.append(Episode(obs, actions, rewards, terminated, np.zeros(length, dtype=bool), level=0))
    write_dataset(path, eps, MANIFEST)
    return load_dataset(path)


def small_iql(**kwargs) -> DiscreteIQL:
    return DiscreteIQL(OBS_SHAPE, NUM_ACTIONS, encoder="minigrid_cnn", **kwargs)




@pytest.fixture
def dataset(tmp_path, rng):
    return make_dataset(tmp_path / "ds", rng)


def test_updates_lower_each_loss_on_a_fixed_batch(dataset, rng):
    # gamma=0, tau=0 and temperature=0 make each loss a fixed supervised objective (Q -> r,
    # V -> expectile of the frozen target Q, policy -> plain log-likelihood), so each must fall.
    agent = small_iql(seed=1, gamma=0.0, tau=0.0, target_update="polyak", temperature=0.0, learning_rate=1e-3)
    batch = dataset.sample_transitions(64, rng)
    with torch.no_grad():
        before = {k: float(v) for k, v in agent.loss(batch).items()}
    for _ in range(60):
        stats = agent.update(batch)
    assert {"loss/q", "loss/v", "loss/policy"} <= set(stats) and all(isinstance(v, float) for v in stats.values())
    with torch.no_grad():
        after = {k: float(v) for k, v in agent.loss(batch).items()}
    for key in ("loss/q", "loss/v", "loss/policy"):
        assert after[key] < 0.5 * before[key], (key, before[key], after[key])
    assert agent.num_updates == 60


def test_targets_follow_the_q_networks_by_polyak_averaging(dataset, rng):
    agent = small_iql(tau=0.25, target_update="polyak")
    target_before = [p.clone() for p in agent.q_targets.parameters()]
    agent.update(dataset.sample_transitions(16, rng))
    for old, new, online in zip(target_before, agent.q_targets.parameters(), agent.q_nets.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)
    assert not any(p.requires_grad for p in agent.q_targets.parameters())


def test_update_accepts_torch_tensors(dataset, rng):
    agent = small_iql()
    batch = {k: torch.as_tensor(np.asarray(v)) for k, v in dataset.sample_transitions(8, rng).items()}
    stats = agent.update(batch)
    assert all(np.isfinite(v) for v in stats.values())


def test_state_dict_round_trip_gives_same_actions_and_resumes_identically(dataset, rng):
    agent = small_iql(seed=3)
    for _ in range(5):
        agent.update(dataset.sample_transitions(32, rng))
    fresh = small_iql(seed=4)  # different initial weights: everything must come from the state
    obs, _ = make_obs(np.random.default_rng(7), 64)
    assert not torch.equal(fresh.policy.head[0].weight, agent.policy.head[0].weight)
    fresh.load_state_dict(agent.state_dict())
    np.testing.assert_array_equal(fresh.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    np.testing.assert_array_equal(fresh.act(obs), agent.act(obs))  # same sampler state
    # The optimizer and targets came along: one more step keeps the two agents identical.
    # (Adam without its moments would move each weight by ~learning_rate = 5e-4: far outside the tolerance.)
    batch = dataset.sample_transitions(32, rng)
    assert fresh.update(batch) == pytest.approx(agent.update(batch), rel=1e-5)
    mine, theirs = agent.state_dict(), fresh.state_dict()
    for part in ("q_nets", "q_targets", "value", "policy"):
        for name, tensor in mine[part].items():
            torch.testing.assert_close(theirs[part][name], tensor, msg=f"{part}.{name}")
    assert fresh.num_updates == agent.num_updates == 6


def test_act_shapes_and_sampling(rng):
    agent = small_iql()
    obs, _ = make_obs(rng, 5)
    for deterministic in (True, False):
        actions = agent.act(obs, deterministic=deterministic)
        assert actions.shape == (5,) and actions.dtype == np.int64
        assert ((actions >= 0) & (actions < NUM_ACTIONS)).all()


def test_learns_the_rewarded_action_from_mostly_wrong_data(tmp_path, rng):
    dataset = make_dataset(tmp_path / "ds", rng, episodes=2000)
    logged = dataset.sample_transitions(5000, rng)
    assert logged["rewards"].mean() < 0.3  # behaviour cloning would copy the (mostly wrong) logged actions
    # gamma=0.5: a short horizon keeps the bootstrap noise small, the reward decides; fast (Polyak) targets
    # and a larger step size keep the test short.
    agent = small_iql(seed=0, gamma=0.5, tau=0.1, target_update="polyak", learning_rate=1e-3)
    for _ in range(300):
        agent.update(dataset.sample_transitions(128, rng))
    obs, best = make_obs(np.random.default_rng(123), 500)  # fresh observations
    accuracy = float((agent.act(obs, deterministic=True) == best).mean())
    assert accuracy >= 0.9, accuracy
