"""The xland suite: local ruleset generation, ruleset-id splits, the JAX env and its Gymnasium vector env."""

import numpy as np
import pytest

pytest.importorskip("xminigrid", reason="the xland suite needs the jax extra: pip install 'rlgen[jax]'")

from rlgen.config import ConfigError, load_config  # noqa: E402
from rlgen.envs import LevelSplit, make_env  # noqa: E402
from rlgen.envs import xland  # noqa: E402
from rlgen.envs.leakage import find_duplicate_levels  # noqa: E402
from rlgen.errors import SplitError  # noqa: E402

OPTIONS = {"rulesets": "trivial", "num_rulesets": 400, "ruleset_seed": 0}


@pytest.fixture(autouse=True)
def ruleset_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGEN_CACHE", str(tmp_path / "cache"))


def small_split(**kw):
    return xland.default_split("r1-9x9", num_levels=200, options={**OPTIONS, **kw})


@pytest.mark.parametrize("kind", ["trivial", "small"])
def test_generation_is_deterministic_by_seed(kind):
    a, b = xland.generate_rulesets(kind, 300, seed=3), xland.generate_rulesets(kind, 300, seed=3)
    for name in ("goals", "rules", "init_tiles", "num_rules"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.sha256() == b.sha256()
    assert xland.generate_rulesets(kind, 300, seed=4).sha256() != a.sha256()
    assert len({a.encoding(i) for i in range(len(a))}) == len(a)  # every ruleset distinct


def test_trivial_and_small_shapes():
    trivial, small = xland.generate_rulesets("trivial", 500, 0), xland.generate_rulesets("small", 500, 0)
    assert (trivial.num_rules == 0).all() and not trivial.rules.any()  # a goal and objects, no rules
    assert trivial.init_tiles.shape[1] == 5  # at most 2 goal tiles + 3 distractors
    assert set(np.unique(small.num_rules)) <= {0, 1, 2} and small.num_rules.max() >= 1


def test_encodings_are_xminigrids():
    import jax.numpy as jnp
    from xminigrid.core import goals, rules

    rs = xland.generate_rulesets("small", 200, 0)
    goal_cls = {1: goals.AgentHoldGoal, 3: goals.AgentNearGoal, 4: goals.TileNearGoal}
    rule_cls = {1: rules.AgentHoldRule, 2: rules.AgentNearRule, 3: rules.TileNearRule}
    seen_goals, seen_rules = set(), set()
    for i in range(len(rs)):
        g = rs.goals[i]
        kw = {"tile": g[1:3]} if g[0] != 4 else {"tile_a": g[1:3], "tile_b": g[3:5]}
        assert np.array_equal(np.asarray(goal_cls[int(g[0])](**{k: jnp.asarray(v) for k, v in kw.items()}).encode()), g)
        seen_goals.add(int(g[0]))
        for r in rs.rules[i]:
            if not r.any():
                continue
            kw = {"tile": r[1:3], "prod_tile": r[3:5]} if r[0] != 3 else {"tile_a": r[1:3], "tile_b": r[3:5], "prod_tile": r[5:7]}
            assert np.array_equal(np.asarray(rule_cls[int(r[0])](**{k: jnp.asarray(v) for k, v in kw.items()}).encode()), r)
            seen_rules.add(int(r[0]))
    assert seen_goals == {1, 3, 4} and seen_rules == {1, 2, 3}
    assert "goal: " in xland.describe_ruleset(rs, 0)


def test_ruleset_file_roundtrip_and_checks(tmp_path):
    rs = xland.generate_rulesets("trivial", 50, 1)
    path = rs.save(tmp_path / "rs.npz")
    back = xland.Rulesets.load(path)
    assert back.sha256() == rs.sha256() and back.meta["seed"] == 1
    opts = xland.resolve_options("r1-9x9", {"rulesets": "trivial", "num_rulesets": 50, "ruleset_seed": 1, "ruleset_file": str(path)})
    assert xland.load_rulesets(opts).sha256() == rs.sha256()
    with pytest.raises(SplitError, match="holds .* but the options say"):
        xland.load_rulesets({**opts, "ruleset_seed": 2})
    with pytest.raises(SplitError, match="does not exist"):
        xland.load_rulesets({**opts, "ruleset_file": str(tmp_path / "missing.npz")})
    # generated rulesets are cached in a file named by kind, count, seed and generator version
    cached = xland.load_rulesets(xland.resolve_options("r1-9x9", OPTIONS))
    assert xland.ruleset_path(xland.resolve_options("r1-9x9", OPTIONS)).is_file() and len(cached) == 400


def test_split_holds_out_disjoint_tasks():
    split = small_split()
    assert (str(split.train), str(split.validation), str(split.held_out)) == ("0-199", "200-249", "250-399")
    rs = xland.load_rulesets(split.options)
    train = {rs.encoding(i) for i in split.train}
    held = {rs.encoding(i) for i in split.held_out}
    assert not train & held  # disjoint ids are disjoint tasks
    report = find_duplicate_levels("xland", split.env, split.train, split.held_out, split.options)
    assert len(report.duplicated_held_out) == 0
    with pytest.raises(SplitError, match="overlap in 150-199"):
        LevelSplit("xland", "r1-9x9", train=range(0, 200), held_out=range(150, 400), options=OPTIONS)


def test_default_split_is_80_percent_and_errors_name_the_fix():
    split = xland.default_split("XLand-MiniGrid-R1-9x9", options={**OPTIONS, "num_rulesets": 1000})
    assert (str(split.train), str(split.held_out)) == ("0-749", "800-999")
    with pytest.raises(SplitError, match="leave no held-out rulesets"):
        xland.default_split("r1-9x9", num_levels=360, options=OPTIONS)
    split = LevelSplit("xland", "r1-9x9", train=range(0, 200), held_out="250-", options=OPTIONS)
    with pytest.raises(SplitError, match='past the last ruleset id 399.*"250-399"'):
        make_env(split, "held_out")
    with pytest.raises(ConfigError, match="rulesets='huge'; allowed: trivial, small, medium, high"):
        load_config(None, ["env=xland/r1-9x9", "split.options.rulesets=huge"])
    with pytest.raises(ConfigError, match="unknown MiniGrid-port option"):
        load_config(None, ["env=xland/doorkey-5x5", "split.options.goal_obs=true"])


def test_vector_env_levels_obs_and_next_step_autoreset():
    split = small_split()
    env = make_env(split, "held_out", num_envs=8, seed=0)
    obs, info = env.reset()
    assert obs.shape == (8, 7, 5, 5) and obs.dtype == np.uint8
    assert split.held_out.contains(info["level"]).all()
    rs = xland.load_rulesets(split.options)
    assert np.array_equal(obs[:, 2:, 0, 0], rs.goals[info["level"]])  # the goal channels show the task
    rng = np.random.default_rng(0)
    ended = np.zeros(8, bool)
    for _ in range(300):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 6, size=8))
        if ended.any():  # the step after an episode's end only starts the next episode
            assert (reward[ended] == 0).all() and not (terminated | truncated)[ended].any()
        ended = terminated | truncated
        assert split.held_out.contains(info["level"]).all()
        assert ((reward > 0) <= terminated).all() and (reward <= 1).all()
    env.close()


def test_minigrid_port_level_is_the_seed():
    split = LevelSplit.from_dict({"suite": "xland", "env": "doorkey-5x5", "train": "0-199", "held_out": "250-"})
    assert split.env == "MiniGrid-DoorKey-5x5"
    jenv = xland.make_jax_env(split.env, split.options)
    import jax

    grids = {}
    for key in (0, 1):
        for level in (7, 8, 9):
            state, obs = jenv.reset(jax.random.PRNGKey(key), level)
            grids.setdefault(level, []).append(np.asarray(state.timestep.state.grid).tobytes())
    assert all(a == b for a, b in grids.values())  # same seed, same layout, whatever the key
    assert len({v[0] for v in grids.values()}) > 1
    assert obs.shape == (2, 7, 7)
