"""Shard codecs: the zstd parameters a shard is compressed with and the axis order its observations are stored in.

Two grades (the README's developer notes give the measurements, ``bench/data.py`` makes them):

- ``fresh``: what ``rlgen collect`` writes while the env runs, so it must keep pace with collection (no ldm);
- ``archive``: what ``rlgen datasets compact`` re-encodes finished shards with, trading minutes for disk.

Both are one zstd frame with its content checksum, so every reader decodes either with one decompressor;
long-distance matching (``ldm``) finds the repeats between episodes of the same level that lie megabytes
apart (a 64-envs collection interleaves them), which zstd's default window (2-8 MiB) cannot reach.

Observation layout: channel-first images (Procgen's ``(3, 64, 64)``, MiniGrid's ``(3, 7, 7)``) are stored
channel-last (``(64, 64, 3)``), because a pixel's three channels are alike and its neighbour's too, which
zstd's matcher finds in interleaved bytes and not in planes 4 KiB apart. Readers transpose back
(:func:`from_stored`), so every reader sees the env's arrays, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: The largest zstd window a shard may use (2**27 = 128 MiB), and so what the decoder is allowed to allocate:
#: it refuses a frame that asks for more (a corrupt or foreign file), rather than allocating for it.
MAX_WINDOW_LOG = 27


@dataclass(frozen=True)
class Codec:
    """A zstd setting for shards.

    Attributes:
        level: zstd compression level.
        ldm: long-distance matching, with a window of ``2**window_log`` bytes.
        window_log: log2 of the match window (None: the level's default).
        threads: zstd worker threads (0: compress on the calling thread). The output depends on whether it
            is 0 or not, never on the number, so shards stay byte-identical on any machine.
    """

    level: int
    ldm: bool = False
    window_log: int | None = None
    threads: int = 0

    @property
    def name(self) -> str:
        """``zstd-19-ldm27``: what the manifest's shard entries record as their ``codec``."""
        return f"zstd-{self.level}" + (f"-ldm{self.window_log}" if self.ldm else "") + (f"-w{self.window_log}" if self.window_log and not self.ldm else "")

    def record(self) -> dict[str, Any]:
        """The parameters, for a shard header (JSON)."""
        return {"name": "zstd", "level": self.level, "ldm": self.ldm, "window_log": self.window_log}

    def compressor(self) -> Any:
        """A ``zstandard.ZstdCompressor`` for this setting, writing the frame's content checksum."""
        import zstandard

        params: dict[str, Any] = {"write_checksum": 1, "threads": self.threads}
        if self.ldm:
            params["enable_ldm"] = 1
        if self.window_log is not None:
            params["window_log"] = self.window_log
        return zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(self.level, **params))


#: Fresh shards (``rlgen collect``): channel-last zstd 3, no long-distance matching. Measured (README, developer
#: notes): ldm stores 0.046 of raw instead of 0.073 on random coinrun but cut collection from 0.50x to 0.33x of raw
#: env steps/s on 2 cores, so it is left to ``rlgen datasets compact`` (archive grade).
FRESH = Codec(level=3)
#: Archive shards (``rlgen datasets compact``).
ARCHIVE = Codec(level=19, ldm=True, window_log=MAX_WINDOW_LOG)
#: The grades a user may name (``rlgen datasets compact --level``).
LEVELS: dict[str, Codec] = {"fresh": FRESH, "archive": ARCHIVE}


def decompressor() -> Any:
    """The ``zstandard.ZstdDecompressor`` every shard is read with (any codec above, any schema)."""
    import zstandard

    return zstandard.ZstdDecompressor(max_window_size=1 << MAX_WINDOW_LOG)


def stored_axes(obs_shape: tuple[int, ...]) -> list[int] | None:
    """The permutation of an observation's axes it is stored in, or None to store it as it is.

    Channel-first images (3-D, the first axis the smallest, at most 4 channels) go channel-last: ``[1, 2, 0]``.
    """
    if len(obs_shape) == 3 and obs_shape[0] <= 4 and obs_shape[0] < min(obs_shape[1:]):
        return [1, 2, 0]
    return None


def to_stored(rows: np.ndarray, axes: list[int] | None) -> np.ndarray:
    """``rows`` ``(N, *obs_shape)`` in the stored axis order, C-contiguous (what the shard's bytes are)."""
    if axes is None:
        return np.ascontiguousarray(rows)
    if axes == [1, 2, 0]:  # channel-first -> channel-last as (N, C, H*W) -> (N, H*W, C), one plane at a time: about
        n, c, h, w = rows.shape  # twice the speed of numpy's generic 4-D transposed copy (measured on 3x64x64 frames)
        out = np.empty((n, h, w, c), dtype=rows.dtype)
        flat, src = out.reshape(n, h * w, c), rows.reshape(n, c, h * w)
        for k in range(c):
            flat[:, :, k] = src[:, k]
        return out
    return np.ascontiguousarray(rows.transpose(0, *(1 + a for a in axes)))


def from_stored(stored: np.ndarray, axes: list[int] | None) -> np.ndarray:
    """The inverse of :func:`to_stored`: ``(N, *obs_shape)`` as the env gave them, C-contiguous like the arrays
    of schema 1-3 shards (a copy: a shard's stored bytes can be freed once it is made)."""
    if axes is None:
        return stored
    if axes == [1, 2, 0]:  # as 3-D arrays, like to_stored
        n, h, w, c = stored.shape
        out = np.empty((n, c, h, w), dtype=stored.dtype)
        np.copyto(out.reshape(n, c, h * w), stored.reshape(n, h * w, c).transpose(0, 2, 1))
        return out
    inverse = np.argsort(axes)
    return np.ascontiguousarray(stored.transpose(0, *(1 + int(a) for a in inverse)))
