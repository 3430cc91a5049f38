"""XLand-MiniGrid's tasks, generated here: rulesets (a goal, production rules, initial objects).

A *level is a ruleset id* for the ``XLand-MiniGrid-*`` envs. The rulesets come from a seeded generator
(:func:`generate_rulesets`, kinds ``trivial``/``small``/``medium``/``high`` after XLand-MiniGrid's benchmark
recipes), never from the internet: xminigrid's ``load_benchmark`` downloads, rlgen never calls it. The
generated set is saved to a file (``.npz``, cached under ``$RLGEN_CACHE`` or ``~/.cache/rlgen``, or a file
named by the ``ruleset_file`` option). Rulesets are unique within a file (rejection sampling on a
canonical encoding), so disjoint ids are disjoint tasks.
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
from typing import Any

import numpy as np

from rlgen.atomic_files import write_bytes_atomic
from rlgen.envs.levels import LevelSet
from rlgen.errors import DependencyError, SplitError

#: Bump when the generator's output for a given (kind, count, seed) changes; part of the cache name.
GENERATOR_VERSION = 1

XLAND_PREFIX = "XLand-MiniGrid-"
PORT_PREFIX = "MiniGrid-"
GOAL_CHANNELS = 5  # xminigrid's goal encoding length


def _require_xminigrid() -> Any:
    try:
        import xminigrid  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise DependencyError(
            f"the xland suite needs xminigrid and JAX ({e}); install them with: pip install 'rlgen[jax]'"
        ) from None
    return xminigrid


def is_xland(env: str) -> bool:
    """True for the ruleset envs (``XLand-MiniGrid-*``), False for the MiniGrid ports."""
    return env.startswith(XLAND_PREFIX)


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
        buf = io.BytesIO()
        np.savez_compressed(buf, goals=self.goals, rules=self.rules, init_tiles=self.init_tiles,
                            num_rules=self.num_rules, meta=np.frombuffer(json.dumps(dict(self.meta)).encode(), dtype=np.uint8))
        return write_bytes_atomic(p, buf.getvalue())

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


def check_levels(env: str, levels: LevelSet, options: Mapping[str, Any]) -> None:
    """XLand level ids must be ruleset ids of the generated set."""
    if is_xland(env) and levels and levels.max >= int(options["num_rulesets"]):
        raise SplitError(
            f"xland/{env}: levels {levels.describe()} go past the last ruleset id {int(options['num_rulesets']) - 1} "
            f"(num_rulesets={options['num_rulesets']}); give a bounded held-out range such as "
            f"\"250-{int(options['num_rulesets']) - 1}\""
        )


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
