"""The on-disk dataset format: file names, the shard encoding, manifest reading.

A dataset is a directory::

    manifest.json      schema version, env, LevelSplit, skill and policies, counts, spaces, config,
                       one {file, sha256, bytes, episodes, transitions} entry per shard
    episodes.jsonl     one row per episode: id, level, return, length, policy, shard, offset
    shards/*.zst       complete episodes, losslessly compressed

A shard is one zstd stream of ``MAGIC``, a little-endian uint32 header length, a JSON header, then
the raw C-order bytes of each array named in the header, in header order::

    obs         (sum(T_i + 1), *obs_shape)  every episode's observations, final one included
    actions     (sum(T_i),)  int64
    rewards     (sum(T_i),)  float32
    terminated  (sum(T_i),)  bool
    truncated   (sum(T_i),)  bool

Episodes follow one another in each array; the header's ``lengths`` (T_i) locate them. Why zstd
over raw arrays rather than HDF5 or ``.npz``: see the README's developer notes (measured).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import numpy as np

from rlgen.errors import RlgenError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"
SHARD_DIR = "shards"
MAGIC = b"RLGSHRD1"
#: zstd level 3: about 0.1 of the raw bytes on Procgen frames at ~350 MB/s (README, developer notes).
ZSTD_LEVEL = 3
#: Per-transition arrays of a shard and their dtypes; ``obs`` keeps the env's dtype.
STEP_ARRAYS: dict[str, np.dtype] = {
    "actions": np.dtype(np.int64),
    "rewards": np.dtype(np.float32),
    "terminated": np.dtype(np.bool_),
    "truncated": np.dtype(np.bool_),
}


class DatasetError(RlgenError):
    """A dataset is missing, corrupt, or not what the caller expected."""


def shard_name(segment: int, index: int) -> str:
    """``shards/shard_SSSSS_NNNNN.zst``: shard ``index`` of collection segment ``segment``."""
    return f"{SHARD_DIR}/shard_{segment:05d}_{index:05d}.zst"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _Hashing:
    """File wrapper that hashes and counts the compressed bytes as they are written."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def write(self, data: bytes | memoryview) -> int:
        self.h.update(data)
        self.n += len(data)
        return self.f.write(data)


def write_shard_file(path: Path, episodes: Sequence[Any]) -> dict[str, Any]:
    """Write ``episodes`` (objects with ``obs``, ``actions``, ``rewards``, ``terminated``, ``truncated``)
    as one shard at ``path``, atomically (temporary name, fsync, rename).

    Returns:
        ``{"sha256", "bytes", "episodes", "transitions"}`` of the written file.
    """
    import zstandard

    if not episodes:
        raise ValueError("a shard needs at least one episode")
    first = np.asarray(episodes[0].obs[0])[None]  # dtype and row shape; obs may be a list of rows
    lengths = [int(len(e.actions)) for e in episodes]
    header = {
        "lengths": lengths,
        "arrays": [{"name": "obs", "dtype": first.dtype.str, "shape": [sum(lengths) + len(lengths), *first.shape[1:]]}]
        + [{"name": k, "dtype": dt.str, "shape": [sum(lengths)]} for k, dt in STEP_ARRAYS.items()],
    }
    raw_header = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        sink = _Hashing(f)
        with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(sink, closefd=False) as z:  # type: ignore[arg-type]
            z.write(MAGIC + struct.pack("<I", len(raw_header)) + raw_header)
            for e in episodes:
                # a list of rows (the collector's) goes to the compressor row by row: no stacked copy
                rows = e.obs if isinstance(e.obs, list) else [e.obs]
                for r in rows:
                    z.write(np.ascontiguousarray(r, dtype=first.dtype).data)
            for name, dt in STEP_ARRAYS.items():
                for e in episodes:
                    z.write(np.ascontiguousarray(getattr(e, name), dtype=dt).data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"sha256": sink.h.hexdigest(), "bytes": sink.n, "episodes": len(episodes), "transitions": sum(lengths)}


def decode_shard(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read a shard: ``(arrays, lengths)``, arrays as described in the module docstring.

    Raises:
        DatasetError: the file is missing, truncated or not a shard.
    """
    import zstandard

    try:
        with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as z:
            head = _read_exact(z, len(MAGIC) + 4, path)
            if head[: len(MAGIC)] != MAGIC:
                raise DatasetError(f"{path} is not an rlgen shard (bad magic)")
            (n,) = struct.unpack("<I", head[len(MAGIC) :])
            header = json.loads(_read_exact(z, n, path))
            arrays = {}
            for spec in header["arrays"]:
                dt = np.dtype(spec["dtype"])
                count = int(np.prod(spec["shape"]))
                buf = _read_exact(z, count * dt.itemsize, path)
                arrays[spec["name"]] = np.frombuffer(buf, dtype=dt).reshape(spec["shape"])
            if z.read(1):
                raise DatasetError(f"{path} has trailing bytes after its arrays")
    except FileNotFoundError:
        raise DatasetError(f"shard {path} is missing") from None
    except zstandard.ZstdError as e:
        raise DatasetError(f"shard {path} is corrupt: {e}") from None
    except (ValueError, KeyError) as e:
        raise DatasetError(f"shard {path} has a bad header: {e}") from None
    return arrays, np.asarray(header["lengths"], dtype=np.int64)


def _read_exact(stream: Any, n: int, path: Path) -> bytes:
    chunks, left = [], n
    while left:
        block = stream.read(left)
        if not block:
            raise DatasetError(f"shard {path} is truncated")
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks)


def read_manifest(root: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a dataset directory; ``DatasetError`` when there is none."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        hint = ""
        if Path(root).is_dir() and any(Path(root).glob(f"{SHARD_DIR}/*.zst")):
            hint = " (it has shards but no manifest: an unfinished `rlgen collect`; run the same command again to finish it)"
        raise DatasetError(f"no dataset at {str(root)!r}: {MANIFEST} not found{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema_version {version!r}; this rlgen reads {SCHEMA_VERSION}")
    return manifest


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)
