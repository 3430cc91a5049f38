"""The on-disk dataset format: file names, the shard encoding, manifest reading.

A dataset is a directory::

    manifest.json      schema version, env, LevelSplit, skill and policies, counts, spaces, config,
                       one {file, sha256, bytes, episodes, transitions} entry per shard, the sha256 of
                       episodes.jsonl and (schema 2) ``content_sha256``, the digest of the manifest itself
    episodes.jsonl     one row per episode: id, level, return, length, policy, shard, offset
    shards/*.zst       complete episodes, losslessly compressed (a shard entry's ``stored_as``, when it has one,
                       names the file holding its bytes: ``rlgen datasets compact`` writes a new file, then the
                       manifest, then removes the old one, so a kill at any moment leaves a readable dataset)

Integrity: every file is covered by a checksum that reading checks. The manifest's ``content_sha256`` covers
its own content (any edit or bit flip of it is refused on load), and it holds the sha256 of
``episodes.jsonl`` (checked on every load) and of every shard (checked when the cache is built and by
``verify``). Schema 2 shards also carry zstd's frame checksum, so a damaged shard fails to decode rather than
decoding to other data. Schema 1 datasets (no frame checksums, no manifest digest) stay readable.
Every path a manifest names must resolve inside the dataset directory.

A shard is one zstd frame of ``MAGIC``, a little-endian uint32 header length, a JSON header, then
the raw C-order bytes of each array named in the header, in header order. The header holds the
episodes' ``lengths`` and (schema 3) their ``ids``, ``levels`` and ``policies``, which tie every row of
``episodes.jsonl`` to the shard content it describes. Schema 4 headers also carry ``obs_axes``, the permutation
of an observation's axes the bytes are stored in (channel-first images are stored channel-last: a third
smaller, see :mod:`rlgen.data.codec`; reading transposes back), and ``codec``, the zstd parameters::

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
import io
import json
import math
import re
import struct
from pathlib import Path
from typing import IO, Any, NamedTuple, Sequence

import numpy as np

from rlgen.atomic_files import atomic_writer
from rlgen.data.codec import FRESH, Codec, decompressor, from_stored, stored_axes, to_stored
from rlgen.errors import DatasetError

#: Written by this rlgen. 2: shards carry zstd's frame checksum, the manifest its ``content_sha256``;
#: 3: shard headers carry their episodes' ids, levels and policy labels; 4: observations stored in the header's
#: ``obs_axes`` order, the header's ``codec``, shard entries' ``codec`` (and ``stored_as`` once compacted).
SCHEMA_VERSION = 4
#: Schema versions this rlgen reads.
READABLE_SCHEMAS = (1, 2, 3, 4)
MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"
SHARD_DIR = "shards"
MAGIC = b"RLGSHRD1"
#: What shards of schema 1-3 were written with (their headers do not say): zstd level 3, the env's axis order.
LEGACY_CODEC = "zstd-3"
#: Per-transition arrays of a shard and their dtypes; ``obs`` keeps the env's dtype.
STEP_ARRAYS: dict[str, np.dtype] = {
    "actions": np.dtype(np.int64),
    "rewards": np.dtype(np.float32),
    "terminated": np.dtype(np.bool_),
    "truncated": np.dtype(np.bool_),
}
#: Bounds on the spaces a manifest may declare: rlgen allocates per observation and per action from them
#: (network input layers, batch buffers, the cache's rows), so a manifest saying ``shape: [10**6, 10**6, 3]``
#: or ``n: 10**12`` must fail here, in one line, not as an allocation deep in torch. 2**26 values is 64 MiB
#: per uint8 observation, 5,000 times a Procgen frame and 30 times MiniGrid's largest rendered grid.
MAX_OBSERVATION_VALUES = 2**26
MAX_OBSERVATION_DIMS = 8
#: Discrete policy heads have one output per action; Procgen has 15, MiniGrid 7, XLand 6.
MAX_ACTIONS = 2**16


def inside(root: Path, relative: Any, source: Path | str, key: str) -> Path:
    """``root / relative``, refusing anything that resolves outside ``root`` (``..``, an absolute path,
    a symlink out): a dataset (or run directory) someone sent you must not make rlgen read or write elsewhere.

    Raises:
        DatasetError: naming ``source`` (the file the path came from), ``key`` and the path.
    """
    if not isinstance(relative, str) or not relative or "\0" in relative:
        shown = relative if not isinstance(relative, str) or len(relative) <= 80 else relative[:77] + "..."
        raise DatasetError(f"{source}: {key} must be a path inside the dataset (a non-empty string without NUL bytes), got {shown!r}")
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise DatasetError(f"{source}: {key} {relative!r} resolves outside {str(base)!r}; refused (its paths must stay inside that directory)")
    return path


def shard_name(segment: int, index: int) -> str:
    """``shards/shard_SSSSS_NNNNN.zst``: shard ``index`` of collection segment ``segment``."""
    return f"{SHARD_DIR}/shard_{segment:05d}_{index:05d}.zst"


def shard_file(entry: dict[str, Any]) -> str:
    """The file (relative to the dataset) holding a manifest shard entry's bytes: ``stored_as`` once compacted,
    else ``file``, which is also the name ``episodes.jsonl``'s ``shard`` column uses."""
    return entry.get("stored_as") or entry["file"]


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


def write_shard_file(path: Path, episodes: Sequence[Any], ids: Sequence[int], codec: Codec = FRESH) -> dict[str, Any]:
    """Write ``episodes`` (objects with ``obs``, ``actions``, ``rewards``, ``terminated``, ``truncated``,
    ``level`` and ``policy``) as one shard at ``path``, atomically (a fresh temporary file, fsync, rename).

    Args:
        ids: the episodes' ids in the dataset (``episodes.jsonl``'s ``id``), recorded in the header.
        codec: the zstd setting (:mod:`rlgen.data.codec`).

    Returns:
        ``{"sha256", "bytes", "episodes", "transitions", "codec"}`` of the written file.
    """
    if not episodes:
        raise ValueError("a shard needs at least one episode")
    if len(ids) != len(episodes):
        raise ValueError(f"{len(ids)} ids for {len(episodes)} episodes")
    first = np.asarray(episodes[0].obs[0])[None]  # dtype and row shape; obs may be a list of rows
    lengths = [int(len(e.actions)) for e in episodes]
    header = {
        "lengths": lengths,
        "ids": [int(i) for i in ids],
        "levels": [int(e.level) for e in episodes],
        "policies": [str(e.policy) for e in episodes],
        "arrays": [{"name": "obs", "dtype": first.dtype.str, "shape": [sum(lengths) + len(lengths), *first.shape[1:]]}]
        + [{"name": k, "dtype": dt.str, "shape": [sum(lengths)]} for k, dt in STEP_ARRAYS.items()],
    }
    axes = stored_axes(first.shape[1:])

    def obs_blocks() -> Any:
        for e in episodes:
            if isinstance(e.obs, list):  # the collector's list of rows, 256 at a time: no stacked copy of the episode
                for i in range(0, len(e.obs), 256):
                    yield to_stored(np.asarray(e.obs[i : i + 256], dtype=first.dtype), axes)
            else:
                yield to_stored(np.asarray(e.obs, dtype=first.dtype), axes)

    def step_blocks() -> Any:
        for name, dt in STEP_ARRAYS.items():
            for e in episodes:
                yield np.ascontiguousarray(getattr(e, name), dtype=dt)

    info = _write_frame(path, header, axes, codec, obs_blocks(), step_blocks())
    return {**info, "episodes": len(episodes), "transitions": sum(lengths)}


def rewrite_shard(path: Path, content: "ShardContent", codec: Codec, rows_per_block: int = 1024) -> dict[str, Any]:
    """Write a decoded shard's ``content`` again at ``path`` with ``codec`` (atomically), its observations
    in :func:`rlgen.data.codec.stored_axes` order whatever order the source stored them in. Reading the
    new file gives the same arrays, lengths and labels. Returns ``{"sha256", "bytes", "codec"}``."""
    arrays = content.arrays
    header: dict[str, Any] = {"lengths": [int(x) for x in content.lengths]}
    if content.labels is not None:
        header.update(ids=[int(x) for x in content.labels["ids"]], levels=[int(x) for x in content.labels["levels"]],
                      policies=[str(x) for x in content.labels["policies"]])  # fmt: skip
    header["arrays"] = [{"name": k, "dtype": arrays[k].dtype.str, "shape": list(arrays[k].shape)} for k in ("obs", *STEP_ARRAYS)]
    obs = arrays["obs"]
    axes = stored_axes(obs.shape[1:])
    obs_blocks = (to_stored(obs[i : i + rows_per_block], axes) for i in range(0, len(obs), rows_per_block))
    return _write_frame(path, header, axes, codec, obs_blocks, (np.ascontiguousarray(arrays[k]) for k in STEP_ARRAYS))


def _write_frame(path: Path, header: dict[str, Any], axes: list[int] | None, codec: Codec, *blocks: Any) -> dict[str, Any]:
    """One zstd frame of ``MAGIC``, the header (completed with ``obs_axes`` and ``codec``) and ``blocks`` (iterables
    of C-contiguous arrays, in header order), atomically at ``path``. Returns ``{"sha256", "bytes", "codec"}``."""
    raw_header = json.dumps({**header, "obs_axes": axes, "codec": codec.record()}).encode()
    with atomic_writer(path, fsync=True) as f:
        sink = _Hashing(f)
        # the codec writes zstd's content checksum (xxhash64 of the decoded bytes) at the frame's end, so a flipped
        # bit anywhere fails the decode instead of yielding other data (13 of 54 flips decoded silently without it)
        with codec.compressor().stream_writer(sink, closefd=False) as z:  # type: ignore[arg-type]
            z.write(MAGIC + struct.pack("<I", len(raw_header)) + raw_header)
            for source in blocks:
                for block in source:
                    z.write(block.data)
    return {"sha256": sink.h.hexdigest(), "bytes": sink.n, "codec": codec.name}


class ShardContent(NamedTuple):
    """A decoded shard.

    Attributes:
        arrays: name -> array, as described in the module docstring.
        lengths: ``(E,)`` int64, the episodes' lengths in shard order.
        labels: for shards of schema 3 and 4, ``{"ids", "levels", "policies"}`` (each ``(E,)``, shard order);
            None for older shards, whose headers have no labels.
        codec: the name of the zstd setting it was written with (``Codec.name``; ``"zstd-3"`` before schema 4).
    """

    arrays: dict[str, np.ndarray]
    lengths: np.ndarray
    labels: dict[str, np.ndarray] | None
    codec: str = LEGACY_CODEC


def decode_shard(path: Path, sha256: str | None = None, frame_checksum: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(arrays, lengths)`` of a shard (:func:`read_shard`)."""
    content = read_shard(path, sha256, frame_checksum)
    return content.arrays, content.lengths


def read_shard(path: Path, sha256: str | None = None, frame_checksum: bool = False) -> ShardContent:
    """Read and decode a shard.

    Args:
        sha256: when given, the file's sha256 must be this (the manifest's entry).
        frame_checksum: the zstd frame must carry its content checksum (schema 2 shards do), so that
            a bit flip that clears the checksum flag cannot switch the check off.

    Raises:
        DatasetError: the file is missing, changed, truncated or not a shard (one line naming it).
    """
    import zstandard

    try:
        data = Path(path).read_bytes()  # compressed: ~0.1 of the raw arrays, which are in RAM anyway
    except FileNotFoundError:
        raise DatasetError(f"shard {path} is missing") from None
    except OSError as e:
        raise DatasetError(f"shard {path} cannot be read: {e.strerror}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetError(f"shard {path}: sha256 differs from the manifest (the file changed or is corrupt); "
                           "run `rlgen datasets verify` on the dataset")  # fmt: skip
    try:
        if frame_checksum and not zstandard.get_frame_parameters(data).has_checksum:
            raise DatasetError(f"shard {path} has no zstd frame checksum, which schema {SCHEMA_VERSION} shards carry; it is corrupt")
        with decompressor().stream_reader(io.BytesIO(data)) as z:
            head = _read_exact(z, len(MAGIC) + 4, path)
            if head[: len(MAGIC)] != MAGIC:
                raise DatasetError(f"{path} is not an rlgen shard (bad magic)")
            (n,) = struct.unpack("<I", head[len(MAGIC) :])
            if n > 1 << 30:  # a corrupt length: never allocate for it
                raise DatasetError(f"shard {path} has a bad header length {n:,}")
            header = json.loads(_read_exact(z, n, path))
            axes = header.get("obs_axes")
            arrays = {}
            for spec in header["arrays"]:
                dt = np.dtype(spec["dtype"])
                count = int(np.prod(spec["shape"]))
                buf = _read_exact(z, count * dt.itemsize, path)
                shape = list(spec["shape"])
                if spec["name"] == "obs" and axes is not None:
                    if sorted(axes) != list(range(len(shape) - 1)):
                        raise DatasetError(f"shard {path} has a bad header: obs_axes {axes!r} is not a permutation of the observation's {len(shape) - 1} axes")
                    stored = np.frombuffer(buf, dtype=dt).reshape([shape[0], *(shape[1 + a] for a in axes)])
                    arrays["obs"] = from_stored(stored, axes)  # in the env's axis order
                else:
                    arrays[spec["name"]] = np.frombuffer(buf, dtype=dt).reshape(shape)
            if z.read(1):  # also reads the frame's end, where zstd checks the content checksum
                raise DatasetError(f"{path} has trailing bytes after its arrays")
        lengths = np.asarray(header["lengths"], dtype=np.int64)
        labels = None
        if "ids" in header:
            labels = {"ids": np.asarray(header["ids"], dtype=np.int64), "levels": np.asarray(header["levels"], dtype=np.int64),
                      "policies": np.asarray([str(p) for p in header["policies"]], dtype=object)}  # fmt: skip
            if any(v.shape != lengths.shape for v in labels.values()):
                raise DatasetError(f"shard {path}: its header's ids, levels and policies do not have one entry per episode")
    except zstandard.ZstdError as e:
        raise DatasetError(f"shard {path} is corrupt: {e}") from None
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        raise DatasetError(f"shard {path} has a bad header: {e}") from None
    return ShardContent(arrays, lengths, labels, _codec_name(header.get("codec")))


def _codec_name(record: Any) -> str:
    """``Codec.name`` of a header's ``codec`` record (``Codec.record``: generic ``"name": "zstd"`` plus the
    parameters), what the manifest's entries record; ``LEGACY_CODEC`` for headers without one (schema 1-3)."""
    if not isinstance(record, dict):
        return LEGACY_CODEC
    try:
        window = record.get("window_log")
        return Codec(level=int(record["level"]), ldm=bool(record.get("ldm")), window_log=None if window is None else int(window)).name
    except (KeyError, TypeError, ValueError):
        return str(record.get("name", LEGACY_CODEC))


#: Most bytes asked of the decompressor at once: zstandard allocates a read's whole size up front, so a header
#: declaring a huge array must cost a bounded buffer and end as "truncated", not as a huge allocation.
_READ_BLOCK = 64 << 20


def _read_exact(stream: Any, n: int, path: Path) -> bytearray:
    """``n`` bytes of ``stream``, grown block by block into one buffer (no second copy of a large array: a
    bytearray grows by ``realloc``, which moves no pages of a large block on Linux)."""
    buf = bytearray()
    while len(buf) < n:
        block = stream.read(min(n - len(buf), _READ_BLOCK))
        if not block:
            raise DatasetError(f"shard {path} is truncated")
        buf += block
    return buf


def read_manifest(root: Path) -> dict[str, Any]:
    """The parsed and checked ``manifest.json`` of a dataset directory.

    Raises:
        DatasetError: no manifest, not JSON, an unknown schema, a missing or malformed key, or (schema 2)
            content that differs from its ``content_sha256``; one line naming the file and the key.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        hint = ""
        if Path(root).is_dir() and any(Path(root).glob(f"{SHARD_DIR}/*.zst")):
            hint = " (it has shards but no manifest: an unfinished `rlgen collect`; run the same command again to finish it)"
        raise DatasetError(f"no dataset at {str(root)!r}: {MANIFEST} not found{hint}")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise DatasetError(f"{path} cannot be read: {e.strerror}") from None
    check_manifest(manifest, path)
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces), ``content_sha256`` left out."""
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def with_digest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with its ``content_sha256`` set (written last, over everything else)."""
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    return {**body, "content_sha256": manifest_digest(body)}


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_manifest(m: Any, path: Path | str) -> None:
    """Refuse a manifest whose structure rlgen would trip over later (deep inside numpy or torch)."""

    def bad(key: str, want: str, got: Any) -> DatasetError:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        return DatasetError(f"{path}: {key} must be {want}, got {shown}")

    if not isinstance(m, dict):
        raise bad("the manifest", "a JSON object", m)
    version = m.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise DatasetError(f"{path} has schema_version {version!r}; this rlgen reads {', '.join(map(str, READABLE_SCHEMAS))}")
    kind = m.get("kind", "dataset")
    if kind not in ("dataset", "subset"):
        raise bad("kind", "'dataset' or 'subset'", kind)
    for key in ("env", "observation_space", "action_space", *(("parent",) if kind == "subset" else ("shards",))):
        if key not in m:
            raise DatasetError(f"{path}: key {key!r} is missing")
    if not isinstance(m["env"], str) or "/" not in m["env"]:
        raise bad("env", "SUITE/ENV", m["env"])
    space = m["observation_space"]
    shape = space.get("shape") if isinstance(space, dict) else None
    if not isinstance(shape, list) or not shape or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in shape):
        raise bad("observation_space.shape", "a list of positive ints", shape if isinstance(space, dict) else space)
    if len(shape) > MAX_OBSERVATION_DIMS or math.prod(shape) > MAX_OBSERVATION_VALUES:
        raise bad("observation_space.shape", f"at most {MAX_OBSERVATION_DIMS} dimensions of at most {MAX_OBSERVATION_VALUES:,} values "
                  "in all (rlgen allocates per observation from it)", shape)  # fmt: skip
    try:
        dtype = np.dtype(space.get("dtype", "uint8"))
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise bad("observation_space.dtype", "a numeric numpy dtype such as 'uint8'", space.get("dtype"))
    n = m["action_space"].get("n") if isinstance(m["action_space"], dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ACTIONS:
        raise bad("action_space.n", f"an int in 1..{MAX_ACTIONS:,} (a discrete policy head has one output per action)",
                  n if isinstance(m["action_space"], dict) else m["action_space"])  # fmt: skip
    if kind == "subset":
        if not isinstance(m["parent"], str) or not m["parent"]:
            raise bad("parent", "the path of the parent dataset", m["parent"])
    else:
        _check_shard_entries(m, path, bad)
    if "episodes_sha256" in m and not _SHA256.match(str(m["episodes_sha256"])):
        raise bad("episodes_sha256", "64 hex digits", m["episodes_sha256"])
    if version >= 2 and m.get("content_sha256") != manifest_digest(m):
        raise DatasetError(f"{path}: content differs from its content_sha256 (the manifest was edited or is corrupt); "
                           "restore it from a copy or collect the dataset again")  # fmt: skip


def _check_shard_entries(m: dict[str, Any], path: Path | str, bad: Any) -> None:
    shards = m["shards"]
    if not isinstance(shards, list) or not shards:
        raise bad("shards", "a non-empty list of {file, sha256, ...} entries", shards)
    for i, e in enumerate(shards):
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not _SHA256.match(str(e.get("sha256", ""))):
            raise bad(f"shards[{i}]", "{file: str, sha256: 64 hex digits, ...}", e)
        if "stored_as" in e and not isinstance(e["stored_as"], str):
            raise bad(f"shards[{i}].stored_as", "a path inside the dataset", e["stored_as"])
    files = [e["file"] for e in shards]
    if len(set(files)) != len(files):
        raise DatasetError(f"{path}: shards lists {len(files) - len(set(files))} file(s) twice")
