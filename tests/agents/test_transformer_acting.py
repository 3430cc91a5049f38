"""Acting with cached step tokens (issue 18, part 1) decides exactly as re-encoding each episode's whole
window at every step did: same actions, greedy and sampled, with episodes restarting mid-sequence."""

import numpy as np
import pytest
import torch

from rlgen.agents.bct import BCTransformer
from rlgen.agents.dt import DecisionTransformer

OBS_SHAPE = (3, 7, 7)
NUM_ACTIONS = 5
CONTEXT = 4


def make_agent(kind: str, seed: int):
    common = dict(encoder="minigrid_cnn", context_length=CONTEXT, n_layers=2, n_heads=2, embed_dim=32, seed=seed)
    return DecisionTransformer(OBS_SHAPE, NUM_ACTIONS, target_return=3.0, **common) if kind == "dt" else BCTransformer(OBS_SHAPE, NUM_ACTIONS, **common)


class ReencodingActor:
    """The former acting path: keep each episode's raw observations and run the full ``forward`` on the
    left-padded window at every step (the training path; every window goes through the encoder)."""

    def __init__(self, agent) -> None:
        self.agent, self.histories = agent, {}

    def reset(self, keys):
        for k in keys:
            self.histories.pop(k, None)

    def observe(self, keys, rewards):
        for k, r in zip(keys, rewards):
            self.histories[k]["left"] -= float(r)

    def act(self, obs, mode, keys, uniforms=None):
        agent = self.agent
        hs = [self.histories.setdefault(k, {"obs": [], "rtg": [], "actions": [], "t": 0, "left": agent.target_return}) for k in keys]
        for h, o in zip(hs, obs):
            h["obs"].append(o.copy())
            h["rtg"].append(h["left"])
        length = min(CONTEXT, max(len(h["obs"]) for h in hs))
        b = len(hs)
        w_obs = np.zeros((b, length, *OBS_SHAPE), np.uint8)
        w_act, w_t = np.zeros((b, length), np.int64), np.zeros((b, length), np.int64)
        w_rtg, mask = np.zeros((b, length), np.float32), np.zeros((b, length), bool)
        for i, h in enumerate(hs):
            n = min(CONTEXT, len(h["obs"]))
            w_obs[i, length - n :] = np.stack(h["obs"][-n:])
            w_rtg[i, length - n :] = h["rtg"][-n:]
            w_act[i, length - n : length - 1] = h["actions"][len(h["actions"]) - (n - 1) :] if n > 1 else []
            w_t[i, length - n :] = np.arange(h["t"] - n + 1, h["t"] + 1)
            mask[i, length - n :] = True
        agent.model.eval()
        with torch.no_grad():
            logits = agent.model(*(torch.as_tensor(x) for x in (w_obs, w_act, w_t, mask, w_rtg)))[:, -1].float()
        if mode == "greedy":
            actions = logits.argmax(-1).numpy()
        elif mode == "uniforms":
            from rlgen.evaluation.episodes import sample_from_uniforms

            actions = sample_from_uniforms(torch.softmax(logits.double(), -1).numpy(), uniforms)
        else:
            actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=agent.generator).squeeze(1).numpy()
        for h, a in zip(hs, actions):
            h["actions"].append(int(a))
            h["t"] += 1
        return actions.astype(np.int64)


@pytest.mark.parametrize("kind", ["dt", "bct"])
@pytest.mark.parametrize("mode", ["greedy", "uniforms", "generator"])
def test_cached_tokens_act_as_reencoding_the_window(kind, mode):
    rng = np.random.default_rng(3)
    cached, reference = make_agent(kind, seed=7), ReencodingActor(make_agent(kind, seed=7))
    keys = [0, 1, 2]
    next_key = 3
    steps = 0
    for t in range(14):  # longer than the context: windows slide
        obs = rng.integers(0, 6, (len(keys), *OBS_SHAPE), dtype=np.uint8)
        uniforms = rng.random(len(keys)) if mode == "uniforms" else None
        a = cached.act(obs, deterministic=mode == "greedy", keys=keys, uniforms=uniforms)
        b = reference.act(obs, mode, keys, uniforms)
        np.testing.assert_array_equal(a, b, err_msg=f"step {t}, keys {keys}")
        steps += len(keys)
        rewards = rng.random(len(keys)).astype(np.float32)
        cached.observe(keys, rewards)
        reference.observe(keys, rewards)
        if t in (5, 9):  # episodes end for some rows: new keys take their places, reset as evaluation does
            for i in ([1] if t == 5 else [0, 2]):
                keys[i] = next_key
                cached.reset([next_key])
                reference.reset([next_key])
                next_key += 1
    assert steps == 42


def test_each_observation_goes_through_the_encoder_once():
    agent = make_agent("dt", seed=1)
    rows = []
    agent.model.encoder.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    rng = np.random.default_rng(0)
    for _ in range(2 * CONTEXT):
        agent.act(rng.integers(0, 6, (3, *OBS_SHAPE), dtype=np.uint8), deterministic=True, keys=[0, 1, 2])
    assert sum(rows) == 3 * 2 * CONTEXT  # re-encoding whole windows would pass 3 x 4 per step once they are full
