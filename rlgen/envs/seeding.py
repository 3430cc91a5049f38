"""Seeds for vector envs: independent streams per (seed, ..., env index), in the range each suite accepts.

``make_env(seed=...)`` takes an int, or a sequence of ints naming one stream among many (collection passes
``(seed, segment)``). The built-in suites give env ``i`` of a vector env the stream of
``np.random.SeedSequence([seed, i])``, never ``seed + i``: with ``seed + i``, env ``i + 1`` of seed ``s``
replays env ``i`` of seed ``s + 1``, so two seeds of one study (or two segments of one collection) share
all but one of their envs' level streams.

SeedSequence hashes its entropy, so distinct inputs give unrelated streams; two of them coincide only when
their 63-bit derived seeds collide (probability 2**-63 per pair). EnvPool takes one int32 seed per pool
(env ``i`` gets ``seed + i`` inside it), so Procgen pools get a hashed 31-bit seed: two pools of ``n`` envs
can overlap only if their seeds land within ``n`` of each other (probability about ``2 n / 2**31`` per
pair, 1.5e-8 for 16 envs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlgen.errors import SplitError

#: ``make_env`` seeds lie in ``[0, SEED_LIMIT)``: what ``jax.random.PRNGKey`` takes without overflow.
SEED_LIMIT = 2**63


def _bits_of(entropy: Sequence[int], bits: int) -> int:
    word = int(np.random.SeedSequence([int(x) for x in entropy]).generate_state(1, np.uint64)[0])
    return word >> (64 - bits)


def stream_seed(seed: int | Sequence[int]) -> int:
    """``seed`` as one int in ``[0, SEED_LIMIT)``: an int is kept as it is, a sequence of ints is hashed
    (``np.random.SeedSequence``) into one.

    Raises:
        SplitError: a negative, too large or non-integer seed (one line naming it).
    """
    parts = [seed] if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else seed
    try:
        values = list(parts)  # type: ignore[arg-type]
    except TypeError:
        values = [parts]
    if not values or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= int(x) < SEED_LIMIT for x in values):
        raise SplitError(f"seed {seed!r} must be an int in 0..{SEED_LIMIT - 1} (or a non-empty sequence of such ints)")
    if len(values) == 1 and isinstance(seed, (int, np.integer)):
        return int(values[0])
    return _bits_of(values, 63)


def env_seed(seed: int, index: int, bits: int = 63) -> int:
    """The seed of env ``index`` of a vector env seeded with ``seed``: ``bits`` bits of
    ``SeedSequence([seed, index])``."""
    return _bits_of([seed, index], bits)


def pool_seed(seed: int, num_envs: int) -> int:
    """One EnvPool seed for a pool of ``num_envs`` envs: EnvPool seeds env ``i`` with ``seed + i`` and asserts
    an int32 seed, so the pool's seed is hashed from ``seed`` into ``[0, 2**31 - num_envs]``."""
    return _bits_of([seed, 0x9E0], 63) % (2**31 - num_envs + 1)
