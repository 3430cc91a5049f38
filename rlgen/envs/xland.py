"""XLand-MiniGrid (JAX): a task is a ruleset; and xminigrid's single-task MiniGrid ports.

Two kinds of env, both from the ``xminigrid`` package (pip extra ``rlgen[jax]``):

* ``XLand-MiniGrid-R{1,2,4,6,9}-{H}x{W}`` (short: ``r1-9x9``): a *level is a ruleset id*. The rulesets
  (a goal, production rules, initial objects) come from a seeded generator in this module
  (:func:`generate_rulesets`, kinds ``trivial``/``small``/``medium``/``high`` after XLand-MiniGrid's
  benchmark recipes), never from the internet: xminigrid's ``load_benchmark`` downloads, rlgen never
  calls it. The generated set is saved to a file (``.npz``, cached under ``$RLGEN_CACHE`` or
  ``~/.cache/rlgen``, or a file named by the ``ruleset_file`` option) and split by id into training
  and held-out tasks with a ``LevelSplit``. Rulesets are unique within a file (rejection sampling on a
  canonical encoding), so disjoint ids are disjoint tasks. The room layout and object positions are
  random per episode, as in XLand-MiniGrid.
* ``MiniGrid-*`` ports (short: ``doorkey-5x5``): one fixed task; a *level is a reset seed*
  (``jax.random.PRNGKey(level)``), so the layout is a function of the level id alone.

Observations are channel-first uint8 ``(C, V, V)``: the agent's egocentric ``V x V`` view as
xminigrid encodes it, channel 0 the tile id, channel 1 the colour id. With ``goal_obs: true``
(default for XLand envs) five more channels carry the ruleset's goal encoding, broadcast over the
view, so a feed-forward policy knows its task. Six actions; reward ``1 - 0.9 * t / max_steps`` on
success, else 0, so returns lie in [0, 1].

Pure-function API for JAX agents: :class:`JaxEnv` (``reset``, ``step``, ``step_autoreset``,
``sample_level``; vmap them). The Gymnasium vector env of the suite protocol,
:class:`XLandVectorEnv`, runs the same functions jitted over a batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import numpy as np

from rlgen.envs.levels import LevelSet
from rlgen.errors import DependencyError, SplitError

if TYPE_CHECKING:
    from rlgen.envs.splits import LevelSplit

NAME = "xland"

#: Bump when the generator's output for a given (kind, count, seed) changes; part of the cache name.
GENERATOR_VERSION = 1

XLAND_PREFIX = "XLand-MiniGrid-"
PORT_PREFIX = "MiniGrid-"

XLAND_DEFAULT_OPTIONS: dict[str, Any] = {
    "rulesets": "trivial",      # generator kind (see RULESET_KINDS)
    "num_rulesets": 10_000,     # rulesets generated; level ids are 0..num_rulesets-1
    "ruleset_seed": 0,
    "ruleset_file": None,       # load this .npz instead of generating (its kind/count/seed are checked)
    "goal_obs": True,           # add the goal encoding as 5 observation channels
    "view_size": None,          # None: the env's own (5 for XLand)
    "max_steps": None,          # None: the env's own (3 * H * W for XLand)
}  # fmt: skip
PORT_DEFAULT_OPTIONS: dict[str, Any] = {"view_size": None, "max_steps": None}

GOAL_CHANNELS = 5  # xminigrid's goal encoding length


def _require_xminigrid() -> Any:
    try:
        import xminigrid  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise DependencyError(
            f"the xland suite needs xminigrid and JAX ({e}); install them with: pip install 'rlgen[jax]'"
        ) from None
    return xminigrid


# --- ruleset generation --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RulesetKind:
    """Parameters of the ruleset generator (the task-tree sampling of XLand-MiniGrid's benchmarks).

    Attributes:
        chain_depth: levels of production rules between the initial objects and the goal.
        prune_prob: chance that a chain branch stops early, its tile placed as an initial object.
        distractor_rules: (maximum) number of rules that lead nowhere useful.
        sample_distractor_rules: draw the number of distractor rules in 0..distractor_rules.
        distractor_objects: extra objects unrelated to the goal.
    """

    chain_depth: int
    prune_prob: float
    distractor_rules: int
    sample_distractor_rules: bool
    distractor_objects: int


RULESET_KINDS: dict[str, RulesetKind] = {
    "trivial": RulesetKind(0, 0.0, 0, False, 3),
    "small": RulesetKind(1, 0.3, 2, True, 2),
    "medium": RulesetKind(2, 0.1, 3, True, 2),
    "high": RulesetKind(3, 0.1, 4, True, 1),
}

# xminigrid's encodings (xminigrid.core.goals / rules): goal = [id, tile, colour, tile, colour],
# rule = [id, tile, colour, tile, colour, tile, colour]. tests/envs/test_xland.py checks these ids
# against xminigrid's own encode().
GOAL_AGENT_HOLD, GOAL_AGENT_NEAR, GOAL_TILE_NEAR = 1, 3, 4
RULE_AGENT_HOLD, RULE_AGENT_NEAR, RULE_TILE_NEAR = 1, 2, 3
GOAL_LEN, RULE_LEN = 5, 7


@lru_cache(maxsize=1)
def _tile_universe() -> dict[str, list[tuple[int, int]]]:
    from xminigrid.core.constants import Colors, Tiles  # noqa: PLC0415

    colors = [Colors.RED, Colors.GREEN, Colors.BLUE, Colors.PURPLE, Colors.YELLOW, Colors.GREY, Colors.WHITE]
    shapes = [Tiles.BALL, Tiles.SQUARE, Tiles.PYRAMID, Tiles.KEY, Tiles.HEX, Tiles.STAR]  # all pickable
    pickable = [(s, c) for s in shapes for c in colors]
    return {
        "pickable": pickable,
        # the agent can stand next to a goal tile but not pick it up
        "near": pickable + [(Tiles.GOAL, c) for c in colors],
        # a rule may make its input disappear (turn it into floor)
        "product": pickable + [(Tiles.FLOOR, Colors.BLACK)],
    }


@dataclasses.dataclass(frozen=True)
class Rulesets:
    """A generated set of rulesets, stacked and padded (xminigrid's ``Benchmark`` layout).

    ``goals (N, 5)``, ``rules (N, R, 7)`` (zero rows are empty rules), ``init_tiles (N, K, 2)``
    (zero rows are empty tiles), ``num_rules (N,)`` (rules in the goal's chain), all uint8.
    ``meta``: kind, count, seed, generator version.
    """

    goals: np.ndarray
    rules: np.ndarray
    init_tiles: np.ndarray
    num_rules: np.ndarray
    meta: Mapping[str, Any]

    def __len__(self) -> int:
        return int(self.goals.shape[0])

    def encoding(self, i: int) -> bytes:
        """Canonical bytes of ruleset ``i``: goal, rules sorted, initial tiles sorted."""
        rules = sorted(tuple(r) for r in self.rules[i].tolist() if any(r))
        tiles = sorted(tuple(t) for t in self.init_tiles[i].tolist() if any(t))
        return json.dumps([self.goals[i].tolist(), rules, tiles]).encode()

    def sha256(self) -> str:
        h = hashlib.sha256()
        for a in (self.goals, self.rules, self.init_tiles, self.num_rules):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def to_benchmark(self) -> Any:
        """The same rulesets as an ``xminigrid.benchmarks.Benchmark`` (shuffle, split, sample_ruleset)."""
        _require_xminigrid()
        import jax.numpy as jnp  # noqa: PLC0415
        from xminigrid.benchmarks import Benchmark  # noqa: PLC0415

        return Benchmark(goals=jnp.asarray(self.goals), rules=jnp.asarray(self.rules),
                         init_tiles=jnp.asarray(self.init_tiles), num_rules=jnp.asarray(self.num_rules))

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` atomically (temporary name, then rename)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, goals=self.goals, rules=self.rules, init_tiles=self.init_tiles,
                            num_rules=self.num_rules, meta=np.frombuffer(json.dumps(dict(self.meta)).encode(), dtype=np.uint8))
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Rulesets":
        p = Path(path)
        if not p.is_file():
            raise SplitError(f"no ruleset file at {str(p)!r}")
        try:
            with np.load(p) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                return cls(z["goals"], z["rules"], z["init_tiles"], z["num_rules"], meta)
        except (OSError, KeyError, ValueError) as e:
            raise SplitError(f"{p} is not a ruleset file made by rlgen ({e})") from None


def _sample_goal(rng: np.random.Generator, u: dict[str, list[tuple[int, int]]]) -> tuple[list[int], list[tuple[int, int]]]:
    kind = int(rng.integers(3))
    if kind == 0:
        tile = u["pickable"][rng.integers(len(u["pickable"]))]
        return [GOAL_AGENT_HOLD, *tile, 0, 0], [tile]
    if kind == 1:
        tile = u["near"][rng.integers(len(u["near"]))]
        return [GOAL_AGENT_NEAR, *tile, 0, 0], [tile]
    a = u["near"][rng.integers(len(u["near"]))]
    choices = [t for t in u["pickable"] if t != a]
    b = choices[rng.integers(len(choices))]
    return [GOAL_TILE_NEAR, *a, *b], [a, b]


def _sample_rule(
    rng: np.random.Generator, u: dict[str, list[tuple[int, int]]], product: tuple[int, int], used: set[tuple[int, int]]
) -> tuple[list[int], list[tuple[int, int]]]:
    """A rule that produces ``product`` from inputs not in ``used``; returns (encoding, inputs)."""
    pick = [t for t in u["pickable"] if t not in used]
    near = [t for t in u["near"] if t not in used]
    kind = int(rng.integers(3))
    if kind == 0:
        tile = pick[rng.integers(len(pick))]
        return [RULE_AGENT_HOLD, *tile, *product, 0, 0], [tile]
    if kind == 1:
        tile = near[rng.integers(len(near))]
        return [RULE_AGENT_NEAR, *tile, *product, 0, 0], [tile]
    a = near[rng.integers(len(near))]
    pick_b = [t for t in pick if t != a]
    b = pick_b[rng.integers(len(pick_b))]
    return [RULE_TILE_NEAR, *a, *b, *product], [a, b]


def _sample_ruleset(rng: np.random.Generator, kind: RulesetKind) -> tuple[list[int], list[list[int]], list[tuple[int, int]], int]:
    """One ruleset: a goal, a chain of rules leading to it (a tree pruned at random), distractors."""
    u = _tile_universe()
    goal, goal_tiles = _sample_goal(rng, u)
    used: set[tuple[int, int]] = set(goal_tiles)
    frontier = list(goal_tiles)
    rules: list[list[int]] = []
    init: list[tuple[int, int]] = []
    if kind.chain_depth == 0:
        init.extend(goal_tiles)
    for depth in range(kind.chain_depth):
        nxt: list[tuple[int, int]] = []
        for tile in frontier:
            if kind.prune_prob > 0 and rng.random() < kind.prune_prob:
                init.append(tile)  # this branch ends: the tile is there from the start
                continue
            rule, inputs = _sample_rule(rng, u, tile, used)
            used.update(inputs)
            rules.append(rule)
            nxt.extend(inputs)
        frontier = nxt
        if depth == kind.chain_depth - 1:
            init.extend(frontier)
    num_chain = len(rules)
    spare = [t for t in u["near"] if t not in used]
    init.extend(spare[i] for i in rng.integers(len(spare), size=kind.distractor_objects))
    n_distract = int(rng.integers(kind.distractor_rules + 1)) if kind.sample_distractor_rules else kind.distractor_rules
    for _ in range(n_distract):
        products = [t for t in u["product"] if t not in used]
        product = products[rng.integers(len(products))]
        rule, inputs = _sample_rule(rng, u, product, set())  # may reuse chain tiles: dead ends
        rules.append(rule)
        init.extend(inputs)
    return goal, rules, sorted(init), num_chain


def generate_rulesets(kind: str, count: int, seed: int) -> Rulesets:
    """``count`` distinct rulesets of generator ``kind``, a function of ``(kind, count, seed)`` alone.

    Raises:
        SplitError: unknown kind, count < 1, or the kind has too few distinct rulesets for ``count``.
    """
    if kind not in RULESET_KINDS:
        raise SplitError(f"unknown ruleset kind {kind!r}; allowed: {', '.join(RULESET_KINDS)}")
    if count < 1:
        raise SplitError(f"num_rulesets must be >= 1, got {count}")
    _require_xminigrid()
    spec = RULESET_KINDS[kind]
    rng = np.random.default_rng([GENERATOR_VERSION, seed])
    seen: set[str] = set()
    out: list[tuple[list[int], list[list[int]], list[tuple[int, int]], int]] = []
    rejected = 0
    while len(out) < count:
        goal, rules, init, n_chain = _sample_ruleset(rng, spec)
        key = json.dumps([goal, sorted(rules), init])
        if key in seen:
            rejected += 1
            if rejected > 10 * count + 1000:
                raise SplitError(f"ruleset kind {kind!r} ran out of distinct rulesets after {len(out)}; ask for fewer")
            continue
        seen.add(key)
        out.append((goal, rules, init, n_chain))
    max_rules = max(1, max(len(r[1]) for r in out))
    max_tiles = max(1, max(len(r[2]) for r in out))
    goals = np.zeros((count, GOAL_LEN), dtype=np.uint8)
    rules_arr = np.zeros((count, max_rules, RULE_LEN), dtype=np.uint8)
    tiles = np.zeros((count, max_tiles, 2), dtype=np.uint8)
    num_rules = np.zeros(count, dtype=np.uint8)
    for i, (goal, rules, init, n_chain) in enumerate(out):
        goals[i] = goal
        if rules:
            rules_arr[i, : len(rules)] = rules
        tiles[i, : len(init)] = init
        num_rules[i] = n_chain
    meta = {"kind": kind, "count": count, "seed": seed, "generator_version": GENERATOR_VERSION}
    return Rulesets(goals, rules_arr, tiles, num_rules, meta)


def cache_dir() -> Path:
    return Path(os.environ.get("RLGEN_CACHE", Path.home() / ".cache" / "rlgen")) / "xland"


def ruleset_path(options: Mapping[str, Any]) -> Path:
    """Where the rulesets of these (resolved) options live: ``ruleset_file``, or the cache file."""
    if options.get("ruleset_file"):
        return Path(str(options["ruleset_file"])).expanduser()
    return cache_dir() / f"{options['rulesets']}-{options['num_rulesets']}-seed{options['ruleset_seed']}-v{GENERATOR_VERSION}.npz"


@lru_cache(maxsize=8)
def _load_rulesets_cached(path: str, mtime_ns: int) -> Rulesets:
    return Rulesets.load(path)


def load_rulesets(options: Mapping[str, Any]) -> Rulesets:
    """The rulesets the options name: read from ``ruleset_file``, or generated once and cached.

    A ``ruleset_file`` must hold what ``rulesets``/``num_rulesets``/``ruleset_seed`` say; a cached
    file that does not is regenerated.
    """
    path = ruleset_path(options)
    want = {"kind": options["rulesets"], "count": options["num_rulesets"], "seed": options["ruleset_seed"]}
    if path.is_file():
        rs = _load_rulesets_cached(str(path), path.stat().st_mtime_ns)
        have = {k: rs.meta.get(k) for k in want}
        if have == want:
            return rs
        if options.get("ruleset_file"):
            raise SplitError(
                f"ruleset_file {str(path)!r} holds {have}, but the options say {want}; "
                "set rulesets, num_rulesets and ruleset_seed to match the file"
            )
    elif options.get("ruleset_file"):
        raise SplitError(f"ruleset_file {str(path)!r} does not exist; leave ruleset_file empty to generate the rulesets")
    rs = generate_rulesets(str(options["rulesets"]), int(options["num_rulesets"]), int(options["ruleset_seed"]))
    rs.save(path)
    return rs


# --- suite protocol -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _registry() -> dict[str, str]:
    """Short lower-case name (``r1-9x9``, ``doorkey-5x5``) -> xminigrid id."""
    xminigrid = _require_xminigrid()
    out: dict[str, str] = {}
    for env_id in xminigrid.registered_environments():
        short = env_id.lower().removeprefix(XLAND_PREFIX.lower()).removeprefix(PORT_PREFIX.lower())
        out[short] = env_id
    return dict(sorted(out.items()))


def env_names() -> tuple[str, ...]:
    return tuple(_registry().values())


def is_xland(env: str) -> bool:
    """True for the ruleset envs (``XLand-MiniGrid-*``), False for the MiniGrid ports."""
    return env.startswith(XLAND_PREFIX)


def canonical_env(env: str) -> str:
    registry = _registry()
    name = str(env).strip()
    if name in registry.values():
        return name
    short = name.lower().removeprefix(XLAND_PREFIX.lower()).removeprefix(PORT_PREFIX.lower())
    if short in registry:
        return registry[short]
    raise SplitError(f"unknown xland env {env!r}; allowed: {', '.join(registry)} (or their xminigrid ids)")


def _int_option(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SplitError(f"xland option {name}={value!r} must be an int >= {low}" + (" or null" if allow_none else ""))


def resolve_options(env: str, options: Mapping[str, Any]) -> dict[str, Any]:
    env = canonical_env(env)
    defaults = XLAND_DEFAULT_OPTIONS if is_xland(env) else PORT_DEFAULT_OPTIONS
    unknown = set(options) - set(defaults)
    if unknown:
        kind = "XLand" if is_xland(env) else "MiniGrid-port"
        raise SplitError(f"unknown {kind} option(s) {sorted(unknown)} for {env}; allowed: {', '.join(defaults)}")
    out = {**defaults, **options}
    view = out["view_size"]
    _int_option("view_size", view, 3, allow_none=True)
    if view is not None and view % 2 == 0:
        raise SplitError(f"xland option view_size={view} must be odd")
    _int_option("max_steps", out["max_steps"], 1, allow_none=True)
    if is_xland(env):
        if out["rulesets"] not in RULESET_KINDS:
            raise SplitError(f"xland option rulesets={out['rulesets']!r}; allowed: {', '.join(RULESET_KINDS)}")
        _int_option("num_rulesets", out["num_rulesets"], 1)
        _int_option("ruleset_seed", out["ruleset_seed"], 0)
        if not isinstance(out["goal_obs"], bool):
            raise SplitError(f"xland option goal_obs={out['goal_obs']!r} must be true or false")
        if out["ruleset_file"] is not None and not isinstance(out["ruleset_file"], str):
            raise SplitError(f"xland option ruleset_file={out['ruleset_file']!r} must be a path or null")
    return out


def default_split(env: str, num_levels: int | None = None, options: Mapping[str, Any] | None = None,
                  validation_levels: int = 50, **kwargs: Any) -> "LevelSplit":
    """XLand envs: train on ruleset ids ``0..num_levels-1`` (default: 80% of ``num_rulesets``),
    validate on the next ``validation_levels``, hold out every remaining ruleset id.
    MiniGrid ports: seeds, as the minigrid suite (train 0-199, validation 200-249, held-out 250-)."""
    from rlgen.envs.levels import LEVEL_ID_LIMIT  # noqa: PLC0415
    from rlgen.envs.splits import LevelSplit  # noqa: PLC0415

    env = canonical_env(env)
    opts = resolve_options(env, dict(options or {}))
    if is_xland(env):
        total = int(opts["num_rulesets"])
        n = num_levels if num_levels is not None else int(total * 0.8) - validation_levels
        if n < 1 or n + validation_levels >= total:
            raise SplitError(
                f"xland/{env}: {n} training + {validation_levels} validation rulesets leave no held-out rulesets "
                f"of num_rulesets={total}; lower split.num_levels or raise split.options.num_rulesets"
            )
        end = total
    else:
        n = num_levels if num_levels is not None else 200
        end = LEVEL_ID_LIMIT
        if n < 1:
            raise SplitError(f"num_levels must be >= 1, got {n}")
    return LevelSplit(NAME, env, train=range(0, n), validation=range(n, n + validation_levels),
                      held_out=range(n + validation_levels, end), options=opts, **kwargs)


def normalize_returns(env: str, returns: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    """Suite hook. xminigrid's reward is ``1 - 0.9 * steps / max_steps`` on success, else 0, and an
    episode ends on success: returns already lie in [0, 1]."""
    return np.asarray(returns, dtype=np.float64)


def check_levels(env: str, levels: LevelSet, options: Mapping[str, Any]) -> None:
    """XLand level ids must be ruleset ids of the generated set."""
    if is_xland(env) and levels and levels.max >= int(options["num_rulesets"]):
        raise SplitError(
            f"xland/{env}: levels {levels.describe()} go past the last ruleset id {int(options['num_rulesets']) - 1} "
            f"(num_rulesets={options['num_rulesets']}); give a bounded held-out range such as "
            f"\"250-{int(options['num_rulesets']) - 1}\""
        )


# --- the pure-function env --------------------------------------------------------------------------


class LevelSampler(NamedTuple):
    """A ``LevelSet`` on device: uniform draws over its intervals (int32; any size up to 2**31-1)."""

    starts: Any  # (k,) int32
    offsets: Any  # (k,) int32, cumulative lengths before each interval
    total: Any  # () int32

    @classmethod
    def from_levels(cls, levels: LevelSet) -> "LevelSampler":
        import jax.numpy as jnp  # noqa: PLC0415

        if not levels:
            raise SplitError("cannot sample from an empty level set")
        lengths = np.array([len(r) for r in levels.intervals], dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        starts = np.array([r.start for r in levels.intervals], dtype=np.int64)
        return cls(jnp.asarray(starts, dtype=jnp.int32), jnp.asarray(offsets, dtype=jnp.int32),
                   jnp.asarray(int(lengths.sum()), dtype=jnp.int32))

    def sample(self, key: Any) -> Any:
        import jax  # noqa: PLC0415
        import jax.numpy as jnp  # noqa: PLC0415

        idx = jax.random.randint(key, (), 0, self.total, dtype=jnp.int32)
        j = jnp.searchsorted(self.offsets, idx, side="right") - 1
        return self.starts[j] + (idx - self.offsets[j])


def _env_state_class() -> type:
    from flax import struct  # noqa: PLC0415

    class EnvState(struct.PyTreeNode):
        """One env: xminigrid's timestep, the level (ruleset id or seed) and the env's own PRNG key."""

        timestep: Any
        level: Any
        rng: Any

    return EnvState


@lru_cache(maxsize=1)
def _EnvState() -> type:
    return _env_state_class()


class JaxEnv:
    """Pure functions over one env's state, to ``jax.vmap`` and ``jax.jit``.

    Args:
        env: canonical env id; ``options``: resolved suite options.

    The level sampler is an argument of the functions that draw levels, not part of the env, so one
    compiled function serves every level set.
    """

    def __init__(self, env: str, options: Mapping[str, Any]) -> None:
        xminigrid = _require_xminigrid()
        import jax.numpy as jnp  # noqa: PLC0415

        self.env_id = env
        self.options = dict(options)
        kwargs = {k: options[k] for k in ("view_size", "max_steps") if options.get(k) is not None}
        self.env, self.params = xminigrid.make(env, **kwargs)
        self.xland = is_xland(env)
        self.goal_obs = bool(options.get("goal_obs", False)) and self.xland
        self.rulesets: Rulesets | None = None
        if self.xland:
            self.rulesets = load_rulesets(options)
            self._goals = jnp.asarray(self.rulesets.goals)
            self._rules = jnp.asarray(self.rulesets.rules)
            self._tiles = jnp.asarray(self.rulesets.init_tiles)
        view = int(self.params.view_size)
        channels = 2 + (GOAL_CHANNELS if self.goal_obs else 0)
        self.obs_shape: tuple[int, int, int] = (channels, view, view)
        self.num_actions = int(self.env.num_actions(self.params))
        self.max_steps = int(self.params.max_steps)

    @property
    def num_levels(self) -> int | None:
        """Number of rulesets (XLand); None for the ports (any seed is a level)."""
        return len(self.rulesets) if self.rulesets is not None else None

    def observe(self, timestep: Any) -> Any:
        import jax.numpy as jnp  # noqa: PLC0415

        obs = jnp.transpose(timestep.observation, (2, 0, 1)).astype(jnp.uint8)
        if self.goal_obs:
            v = obs.shape[-1]
            goal = jnp.broadcast_to(timestep.state.goal_encoding.astype(jnp.uint8)[:, None, None], (GOAL_CHANNELS, v, v))
            obs = jnp.concatenate([obs, goal], axis=0)
        return obs

    def reset(self, key: Any, level: Any) -> tuple[Any, Any]:
        """Start an episode on ``level``: returns ``(state, obs)``. ``key`` seeds the env's randomness
        (XLand: layout and object positions; ports: only the state's key, the layout is the level's)."""
        import jax  # noqa: PLC0415
        import jax.numpy as jnp  # noqa: PLC0415
        from xminigrid.types import RuleSet  # noqa: PLC0415

        level = jnp.asarray(level, dtype=jnp.int32)
        key, reset_key = jax.random.split(key)
        if self.xland:
            ruleset = RuleSet(goal=self._goals[level], rules=self._rules[level], init_tiles=self._tiles[level])
            timestep = self.env.reset(self.params.replace(ruleset=ruleset), reset_key)
        else:
            timestep = self.env.reset(self.params, jax.random.PRNGKey(level))
        return _EnvState()(timestep=timestep, level=level, rng=key), self.observe(timestep)

    def step(self, state: Any, action: Any) -> tuple[Any, Any, Any, Any, Any]:
        """One step, no reset: ``(state, obs, reward, terminated, truncated)``."""
        import jax.numpy as jnp  # noqa: PLC0415

        timestep = self.env.step(self.params, state.timestep, action)
        last = timestep.step_type == 2
        terminated = last & (timestep.discount == 0)
        truncated = last & ~terminated
        reward = timestep.reward.astype(jnp.float32)
        return state.replace(timestep=timestep), self.observe(timestep), reward, terminated, truncated

    def sample_level(self, key: Any, sampler: LevelSampler) -> Any:
        return sampler.sample(key)

    def reset_sampled(self, key: Any, sampler: LevelSampler) -> tuple[Any, Any]:
        """Reset on a level drawn from ``sampler``."""
        import jax  # noqa: PLC0415

        k_level, k_reset = jax.random.split(key)
        return self.reset(k_reset, sampler.sample(k_level))

    def step_autoreset(self, state: Any, action: Any, sampler: LevelSampler) -> dict[str, Any]:
        """Step; when the episode ends, start the next one (level from ``sampler``) in the same call.

        Returns a dict: ``state`` and ``obs`` to continue from (the next episode's first when this one
        ended), ``final_obs`` (the observation this step produced), ``reward``, ``terminated``,
        ``truncated``, ``level`` (the level this step ran on).
        """
        import jax  # noqa: PLC0415

        new_state, obs, reward, terminated, truncated = self.step(state, action)
        done = terminated | truncated
        rng, k = jax.random.split(new_state.rng)
        new_state = new_state.replace(rng=rng)
        reset_state, reset_obs = self.reset_sampled(k, sampler)
        pick = lambda a, b: jax.numpy.where(done, a, b)  # noqa: E731  (done is per env: a scalar before vmap)
        out_state = jax.tree_util.tree_map(pick, reset_state, new_state)
        return {
            "state": out_state,
            "obs": pick(reset_obs, obs),
            "final_obs": obs,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "level": state.level,
        }


@lru_cache(maxsize=16)
def _jax_env_cached(env: str, options_json: str) -> JaxEnv:
    return JaxEnv(env, json.loads(options_json))


def make_jax_env(env: str, options: Mapping[str, Any]) -> JaxEnv:
    """The (cached) :class:`JaxEnv` for canonical ``env`` and resolved ``options``."""
    return _jax_env_cached(env, json.dumps(dict(options), sort_keys=True))


def jax_env_for_split(split: "LevelSplit") -> JaxEnv:
    """The :class:`JaxEnv` of a split, after checking its level ids are valid for the env."""
    if split.suite != NAME:
        raise SplitError(f"{split.id} is not an xland env; JAX agents train on xland/... envs")
    jenv = make_jax_env(split.env, split.options)
    for which in ("train", "validation", "held_out"):
        check_levels(split.env, getattr(split, which), split.options)
    return jenv


# --- Gymnasium vector env (the suite protocol) ------------------------------------------------------


@lru_cache(maxsize=16)
def _vector_fns(jenv: JaxEnv) -> dict[str, Any]:
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    def reset(keys: Any, sampler: LevelSampler) -> tuple[Any, Any]:
        return jax.vmap(lambda k: jenv.reset_sampled(k, sampler))(keys)

    def step(state: Any, actions: Any, pending: Any, sampler: LevelSampler) -> tuple[Any, ...]:
        """Next-step autoreset (EnvPool/Gymnasium): an env whose last step ended ignores its action
        and starts the next episode."""

        def one(s: Any, a: Any, p: Any) -> tuple[Any, ...]:
            stepped, obs, reward, terminated, truncated = jenv.step(s, a)
            rng, k = jax.random.split(s.rng)
            fresh, fresh_obs = jenv.reset_sampled(k, sampler)
            fresh = fresh.replace(rng=rng)
            sel = lambda a_, b_: jnp.where(p, a_, b_)  # noqa: E731
            out = jax.tree_util.tree_map(sel, fresh, stepped)
            zero = jnp.zeros((), dtype=bool)
            return (out, sel(fresh_obs, obs), jnp.where(p, 0.0, reward), jnp.where(p, zero, terminated),
                    jnp.where(p, zero, truncated))

        return jax.vmap(one)(state, actions, pending)

    def reset_some(state: Any, keys: Any, mask: Any, sampler: LevelSampler) -> tuple[Any, Any]:
        fresh, obs = reset(keys, sampler)
        sel = lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
        return jax.tree_util.tree_map(sel, fresh, state), obs

    return {"reset": jax.jit(reset), "step": jax.jit(step), "reset_some": jax.jit(reset_some)}


class XLandVectorEnv(gym.vector.VectorEnv):
    """A batch of xminigrid envs behind Gymnasium's vector API (numpy in and out, next-step autoreset).

    Each episode starts on a level drawn uniformly from ``levels``; ``info["level"]`` holds each env's
    current level id. The JAX functions are compiled once per env and batch size.
    """

    def __init__(self, env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> None:
        import jax  # noqa: PLC0415

        check_levels(env, levels, options)
        self.jenv = make_jax_env(env, options)
        self.num_envs = num_envs
        self.sampler = LevelSampler.from_levels(levels)
        self.single_observation_space = gym.spaces.Box(0, 255, shape=self.jenv.obs_shape, dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(self.jenv.num_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": "next_step"}
        self._fns = _vector_fns(self.jenv)
        self._seed = seed
        self._key = jax.random.PRNGKey(seed)
        self._state: Any = None
        self._pending = np.zeros(num_envs, dtype=bool)

    def _keys(self, n: int) -> Any:
        import jax  # noqa: PLC0415

        self._key, sub = jax.random.split(self._key)
        return jax.random.split(sub, n)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        import jax  # noqa: PLC0415

        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._state, obs = self._fns["reset"](self._keys(self.num_envs), self.sampler)
        self._pending = np.zeros(self.num_envs, dtype=bool)
        return np.asarray(obs), {"level": np.asarray(self._state.level, dtype=np.int64)}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int32).reshape(self.num_envs)
        self._state, obs, reward, terminated, truncated = self._fns["step"](self._state, actions, self._pending, self.sampler)
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        self._pending = terminated | truncated
        info = {"level": np.asarray(self._state.level, dtype=np.int64)}
        return np.asarray(obs), np.asarray(reward, dtype=np.float32), terminated, truncated, info

    def reset_envs(self, env_ids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset only ``env_ids`` now; returns their first observations and ``{"level": ...}``."""
        ids = np.asarray(env_ids, dtype=np.int64)
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[ids] = True
        self._state, obs = self._fns["reset_some"](self._state, self._keys(self.num_envs), mask, self.sampler)
        self._pending[ids] = False
        return np.asarray(obs)[ids], {"level": np.asarray(self._state.level, dtype=np.int64)[ids]}

    def close(self, **kwargs: Any) -> None:
        self._state = None


def make_vector_env(env: str, levels: LevelSet, num_envs: int, seed: int, options: Mapping[str, Any]) -> gym.vector.VectorEnv:
    if num_envs < 1:
        raise SplitError(f"num_envs must be >= 1, got {num_envs}")
    return XLandVectorEnv(env, levels, num_envs, seed, options)


def level_fingerprints(env: str, levels: np.ndarray, options: Mapping[str, Any], rollout_steps: int = 0) -> list[bytes]:
    """One digest per level. XLand: the ruleset's canonical encoding (layouts are random per episode,
    so the task is the ruleset); ports: the grid and agent pose at reset, plus the views along a fixed
    action sequence."""
    levels = np.asarray(levels, dtype=np.int64)
    check_levels(env, LevelSet(levels.tolist()), options)
    if is_xland(env):
        rs = load_rulesets(options)
        return [hashlib.blake2b(rs.encoding(int(i)), digest_size=16).digest() for i in levels]
    import jax  # noqa: PLC0415

    jenv = make_jax_env(env, options)
    actions = np.random.default_rng(0).integers(0, jenv.num_actions, size=max(rollout_steps, 0))

    @jax.jit
    def first(level: Any) -> tuple[Any, Any]:
        state, obs = jenv.reset(jax.random.PRNGKey(0), level)
        return state, obs

    step = jax.jit(jenv.step)
    out: list[bytes] = []
    for level in levels:
        state, obs = first(int(level))
        ts = state.timestep
        digest = hashlib.blake2b(np.asarray(ts.state.grid).tobytes(), digest_size=16)
        digest.update(np.asarray([*np.asarray(ts.state.agent.position), int(ts.state.agent.direction)], dtype=np.int64).tobytes())
        for a in actions:
            state, obs, _, terminated, truncated = step(state, int(a))
            digest.update(np.asarray(obs).tobytes())
            if bool(terminated) or bool(truncated):
                break
        out.append(digest.digest())
    return out


def rulesets_info(split: "LevelSplit") -> dict[str, Any] | None:
    """What a run or dataset should record about the rulesets of ``split`` (None for the ports)."""
    if split.suite != NAME or not is_xland(split.env):
        return None
    rs = load_rulesets(split.options)
    return {**dict(rs.meta), "file": str(ruleset_path(split.options)), "sha256": rs.sha256(), "max_rules": int(rs.rules.shape[1]),
            "max_init_tiles": int(rs.init_tiles.shape[1])}


def describe_ruleset(rulesets: Rulesets, i: int) -> str:
    """A ruleset in words, e.g. ``goal: agent holds red ball; rules: (none); objects: ...``."""
    from xminigrid.core.constants import Colors, Tiles  # noqa: PLC0415

    tile_names = {getattr(Tiles, n): n.lower() for n in dir(Tiles) if n.isupper()}
    color_names = {getattr(Colors, n): n.lower() for n in dir(Colors) if n.isupper()}

    def t(tc: Sequence[int]) -> str:
        return f"{color_names.get(int(tc[1]), tc[1])} {tile_names.get(int(tc[0]), tc[0])}"

    g = rulesets.goals[i]
    goal = {GOAL_AGENT_HOLD: lambda: f"agent holds {t(g[1:3])}", GOAL_AGENT_NEAR: lambda: f"agent next to {t(g[1:3])}",
            GOAL_TILE_NEAR: lambda: f"{t(g[1:3])} next to {t(g[3:5])}"}.get(int(g[0]), lambda: f"goal {g.tolist()}")()
    rules = []
    for r in rulesets.rules[i]:
        if not r.any():
            continue
        if r[0] == RULE_AGENT_HOLD:
            rules.append(f"hold {t(r[1:3])} -> {t(r[3:5])}")
        elif r[0] == RULE_AGENT_NEAR:
            rules.append(f"near {t(r[1:3])} -> {t(r[3:5])}")
        elif r[0] == RULE_TILE_NEAR:
            rules.append(f"{t(r[1:3])} next to {t(r[3:5])} -> {t(r[5:7])}")
    objects = [t(x) for x in rulesets.init_tiles[i] if x.any()]
    return f"goal: {goal}; rules: {', '.join(rules) or '(none)'}; objects: {', '.join(objects)}"
