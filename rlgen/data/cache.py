"""A dataset's memory-mapped cache: its shards decompressed once into flat ``.npy`` arrays.

    <dataset>/cache/
        obs.npy              (sum(T_i + 1), *obs_shape)  every observation, the final one of each episode included
        actions.npy          (sum(T_i),) int64; likewise rewards (float32), terminated, truncated (bool),
        ...                  returns_to_go (float32), timesteps and obs_of_step (int64, a row of obs.npy)
        ep_step_start.npy    (episodes,) int64: first step row of episode ``id`` (ids are 0..episodes-1)
        meta.json            written last: the key it was built from; per array its file's bytes, shape,
                             dtype and sha256; its own sha256
    <dataset>/cache.lock     ``flock``ed while the cache is checked-and-rebuilt

The cache is not trusted blindly. Its key names what it was built from (the dataset's manifest digest,
the sha256 of every shard and of ``episodes.jsonl``, the spaces, the episode and transition counts);
building checks each shard against the manifest's sha256 and zstd's frame checksum, the episode lengths,
returns (and, schema 3, ids, levels and policy labels) against ``episodes.jsonl``, and the actions against
the action space. Opening it checks every file's size, ``.npy`` header, shape and sha256 against
``meta.json`` and the dataset's counts, and the index arrays' ranges (``sha256`` runs at about 1.7 GB/s
here: 0.4 s for a 50k-transition Procgen cache, about 7 s for 1M, once per process), so a flipped byte, a
truncated file or a file copied in from elsewhere is never sampled from: the cache is rebuilt from the
(checked) shards instead, with a warning. These checksums catch accidents, not a forger who rewrites
``meta.json`` to match edited arrays: ``rlgen datasets verify`` (``rlgen.data.verify``) re-derives
every array from the shards (:func:`cache_rows`) and compares, which catches that too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tokenize
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.data.format import EPISODES, STEP_ARRAYS, DatasetError, inside, manifest_digest, read_shard, shard_file

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
CACHE_LOCK = "cache.lock"
CACHE_META = "meta.json"
#: 2: meta.json holds a key and per-array checksums (1 held the shard hashes only); 3: the key holds the
#: dataset's digest and counts. Caches of other formats are stale and rebuilt.
CACHE_FORMAT = 3
#: Per-step arrays the cache derives from the shards, beside the shards' own ``STEP_ARRAYS``.
DERIVED_STEP_ARRAYS: dict[str, np.dtype] = {
    "returns_to_go": np.dtype(np.float32),
    "timesteps": np.dtype(np.int64),
    "obs_of_step": np.dtype(np.int64),
}
ARRAY_NAMES: tuple[str, ...] = ("obs", *STEP_ARRAYS, *DERIVED_STEP_ARRAYS, "ep_step_start")
_CHUNK = 16 << 20


def cache_key(manifest: dict[str, Any], episodes_sha256: str, episodes: int, transitions: int) -> dict[str, Any]:
    """What a cache is built from: equal keys, equal caches. ``episodes``/``transitions``: the dataset's
    counts (``episodes.jsonl``'s), which fix every array's length."""
    space = manifest["observation_space"]
    return {
        "format": CACHE_FORMAT,
        "dataset": manifest.get("content_sha256") or manifest_digest(manifest),
        "episodes": int(episodes),
        "transitions": int(transitions),
        "shards": [s["sha256"] for s in manifest["shards"]],
        "episodes_sha256": episodes_sha256,
        "observation_space": {"shape": list(space["shape"]), "dtype": np.dtype(space.get("dtype", "uint8")).str},
        "num_actions": int(manifest["action_space"]["n"]),
    }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def check_cache(path: Path, key: dict[str, Any], digests: bool = True) -> tuple[str, list[str]]:
    """Check the cache at ``path`` against ``key`` and its own ``meta.json``.

    Returns:
        ``(state, problems)``: state ``"ok"``, ``"absent"`` (never built, or a build was killed),
        ``"stale"`` (built from other data: the shards changed, or an older rlgen built it) or
        ``"corrupt"`` (a file differs from what was built); problems name the file.
    """
    meta_path = path / CACHE_META
    if not meta_path.is_file():
        return "absent", [f"{meta_path}: missing (the cache was not built yet)"]
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:
        return "corrupt", [f"{meta_path}: unreadable ({e})"]
    if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), dict) or meta.get("meta_sha256") != _meta_digest(meta):
        if isinstance(meta, dict) and "shards" in meta and not {"key", "meta_sha256"} & set(meta):  # format 1, written up to commit e90b226
            return "stale", [f"{path}: built by an older rlgen"]
        return "corrupt", [f"{meta_path}: not the record this cache was built with (edited or corrupt)"]
    if meta.get("key") != key:
        return "stale", [f"{path}: built from other data than the dataset's current shards and {EPISODES}"]
    problems: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ARRAY_NAMES:
        f = path / f"{name}.npy"
        want = meta["arrays"].get(name)
        if not isinstance(want, dict):
            problems.append(f"{meta_path}: no record of {f.name}")
            continue
        problem = _check_array_file(f, want, _expected_dtype(name, key), digests)
        if problem:
            problems.append(problem)
        else:
            shapes[name] = tuple(want["shape"])
    if not problems:
        problems += _check_shapes(path, shapes, key)
    if not problems:
        problems += _check_ranges(path, shapes, key)
    return ("corrupt" if problems else "ok"), problems


def _expected_dtype(name: str, key: dict[str, Any]) -> np.dtype:
    if name == "obs":
        return np.dtype(key["observation_space"]["dtype"])
    if name == "ep_step_start":
        return np.dtype(np.int64)
    return {**STEP_ARRAYS, **DERIVED_STEP_ARRAYS}[name]


def _check_array_file(f: Path, want: dict[str, Any], dtype: np.dtype, digests: bool) -> str | None:
    try:
        size = f.stat().st_size
    except OSError:
        return f"{f}: missing"
    if size != want.get("bytes"):
        return f"{f}: {size:,} bytes, built with {want.get('bytes')} (truncated or replaced)"
    try:
        with open(f, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return f"{f}: .npy format version {version} (this cache writes 1.0 or 2.0)"
            shape, fortran, got = read_header(fh)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, RecursionError, MemoryError, tokenize.TokenError) as e:
        # numpy parses the header dict with ast.literal_eval: a flipped byte can fail in the tokenizer too
        return f"{f}: bad .npy header ({type(e).__name__}: {str(e)[:100]})"
    if list(shape) != want.get("shape") or got != dtype or np.dtype(want.get("dtype", "")) != dtype or fortran:
        return f"{f}: header says {got.str} {list(shape)}, built as {want.get('dtype')} {want.get('shape')}"
    if digests and file_sha256(f) != want.get("sha256"):
        return f"{f}: sha256 differs from the one recorded when the cache was built (the file changed or is corrupt)"
    return None


def _check_shapes(path: Path, shapes: dict[str, tuple[int, ...]], key: dict[str, Any]) -> list[str]:
    """Every array's shape is fixed by the dataset: its observation shape and its episode and transition counts."""
    steps, episodes = key["transitions"], key["episodes"]
    want = {"obs": (steps + episodes, *key["observation_space"]["shape"]), "ep_step_start": (episodes,)}
    want.update({n: (steps,) for n in (*STEP_ARRAYS, *DERIVED_STEP_ARRAYS)})
    return [f"{path}/{n}.npy: shape {list(shapes[n])}, the dataset's {episodes:,} episodes of {steps:,} transitions need {list(want[n])}"
            for n in ARRAY_NAMES if shapes[n] != want[n]]  # fmt: skip


def _check_ranges(path: Path, shapes: dict[str, tuple[int, ...]], key: dict[str, Any]) -> list[str]:
    """Indices must stay inside their arrays and actions inside the action space (a bad index is an
    IndexError deep in numpy, or a device assert on a GPU)."""
    steps, n_obs = shapes["actions"][0], shapes["obs"][0]
    limits = {"actions": (0, key["num_actions"] - 1), "obs_of_step": (0, n_obs - 2), "ep_step_start": (0, steps - 1), "timesteps": (0, steps - 1)}
    problems = []
    for name, (lo, hi) in limits.items():
        a = np.load(path / f"{name}.npy", mmap_mode="r")
        if len(a) and (int(a.min()) < lo or int(a.max()) > hi):
            problems.append(f"{path}/{name}.npy: values in [{int(a.min())}, {int(a.max())}], allowed [{lo}, {hi}]")
    return problems


def open_cache(path: Path) -> dict[str, Any]:
    """The cache's arrays, memory-mapped read-only."""
    try:
        return {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in ARRAY_NAMES}
    except (OSError, ValueError) as e:
        raise DatasetError(f"cache {path} cannot be opened ({e}); delete it and it is rebuilt") from None


def shard_rows(root: Path, manifest: dict[str, Any], table: np.ndarray, key: dict[str, Any]) -> Iterator[tuple[int, int, dict[str, np.ndarray], np.ndarray]]:
    """Every shard of the dataset at ``root``, checked and turned into the cache rows it fills, in cache order.

    Yields:
        ``(s, o, rows, ids)`` per shard: its first step row ``s`` and observation row ``o`` in the cache,
        ``rows`` (array name -> the values of its rows: ``obs`` ``(m, *obs_shape)``, the per-step arrays
        ``(k,)``) and ``ids``, its episodes' ids, whose ``ep_step_start`` are ``s + rows["ep_first"]``.

    Raises:
        DatasetError: a shard is missing, changed (sha256), corrupt (frame checksum), outside the dataset,
            or does not hold what ``episodes.jsonl`` says (lengths, returns, ids, levels, policies); named.
    """
    obs_shape = tuple(key["observation_space"]["shape"])
    obs_dtype = np.dtype(key["observation_space"]["dtype"])
    num_actions = key["num_actions"]
    frame_checksum = int(manifest.get("schema_version", 1)) >= 2
    source = root / "manifest.json"
    entries = [(e, inside(root, shard_file(e), source, "shard file")) for e in manifest["shards"]]  # all refused before any work
    s = o = 0
    for entry, file in entries:
        shard = read_shard(file, sha256=entry["sha256"], frame_checksum=frame_checksum)
        arrays, lengths = shard.arrays, shard.lengths
        rows = table[table["shard"] == entry["file"]]
        rows = rows[np.argsort(rows["offset"])]
        where = f"{entry['file']} (in {root})"
        if len(rows) != len(lengths) or not np.array_equal(rows["length"], lengths):
            raise DatasetError(f"{where} does not hold the episodes {EPISODES} says; run `rlgen datasets verify {root}`")
        mismatch = label_mismatch(shard.labels, rows)
        if mismatch:
            raise DatasetError(f"{where}: {mismatch}; run `rlgen datasets verify {root}`")
        k, m = int(lengths.sum()), int(lengths.sum() + len(lengths))
        if tuple(arrays["obs"].shape) != (m, *obs_shape) or arrays["obs"].dtype != obs_dtype:
            raise DatasetError(f"{where}: observations {arrays['obs'].dtype.str} {list(arrays['obs'].shape)}, "
                               f"the manifest says {obs_dtype.str} (*, {list(obs_shape)})")  # fmt: skip
        if any(arrays[name].shape != (k,) for name in STEP_ARRAYS):
            raise DatasetError(f"{where}: per-step arrays do not hold {k} steps")
        if k and (arrays["actions"].min() < 0 or arrays["actions"].max() >= num_actions):
            raise DatasetError(f"{where}: actions in [{arrays['actions'].min()}, {arrays['actions'].max()}], "
                               f"the action space has {num_actions} (0..{num_actions - 1})")  # fmt: skip
        out = cache_rows(arrays, lengths, o)
        if not np.allclose(out["episode_returns"], rows["return"], atol=1e-4):
            raise DatasetError(f"{where}: episode returns differ from {EPISODES}; run `rlgen datasets verify {root}`")
        yield s, o, out, rows["id"]
        s, o = s + k, o + m


def cache_rows(arrays: dict[str, np.ndarray], lengths: np.ndarray, o: int) -> dict[str, np.ndarray]:
    """The cache rows of one decoded shard whose first observation lands on cache row ``o``: its own arrays
    plus the derived ones (``timesteps``, ``obs_of_step``, ``returns_to_go``), and ``ep_first`` ``(E,)``
    (each episode's first step within the shard) and ``episode_returns`` ``(E,)`` float64."""
    k = int(lengths.sum())
    rewards = arrays["rewards"].astype(np.float64)
    ep_first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    totals = np.add.reduceat(rewards, ep_first) if k else np.zeros(0)
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    # return-to-go: the episode's total minus what came before step t
    before = np.cumsum(rewards) - rewards
    out = {"obs": arrays["obs"], **{name: arrays[name] for name in STEP_ARRAYS}}
    out["timesteps"] = np.arange(k) - ep_first[episode_of]
    out["obs_of_step"] = o + np.arange(k) + episode_of  # one extra observation per earlier episode
    out["returns_to_go"] = (totals[episode_of] - (before - before[ep_first][episode_of])).astype(np.float32)
    out["ep_first"] = ep_first
    out["episode_returns"] = totals
    return out


def label_mismatch(labels: dict[str, np.ndarray] | None, rows: np.ndarray) -> str | None:
    """What differs between a shard header's labels (schema 3) and its ``episodes.jsonl`` rows (in offset
    order), or None. Shards of older schemas carry no labels: nothing to compare."""
    if labels is None:
        return None
    for name, column in (("ids", "id"), ("levels", "level"), ("policies", "policy")):
        if not np.array_equal(np.asarray(labels[name]).astype(rows[column].dtype), rows[column]):
            return f"the episodes' {name} in its header differ from {EPISODES}'s (the index was edited, or shards were swapped)"
    return None


def build_cache(root: Path, manifest: dict[str, Any], table: np.ndarray, path: Path, key: dict[str, Any]) -> None:
    """Decompress every shard of the dataset at ``root`` (``table``: its episode table) into flat arrays
    under a temporary name, record their checksums, then rename into place, so a killed build leaves no
    half-written cache. Call with the cache lock held: a stale cache and temporary folders of killed
    builds are removed here (only files a cache holds; anything else there is refused, not deleted).

    Raises:
        DatasetError: as :func:`shard_rows`.
    """
    n_steps = int(table["length"].sum())
    n_obs = n_steps + len(table)
    obs_shape = tuple(key["observation_space"]["shape"])
    obs_dtype = np.dtype(key["observation_space"]["dtype"])
    for e in manifest["shards"]:  # every path refused before any work
        inside(root, shard_file(e), root / "manifest.json", "shard file")
    for stale in root.glob(f"{CACHE_DIR}.tmp-*"):
        remove_cache_dir(stale)
    tmp = path.with_name(f"{CACHE_DIR}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        out = {"obs": np.lib.format.open_memmap(tmp / "obs.npy", "w+", obs_dtype, (n_obs, *obs_shape))}
        for k, dt in {**STEP_ARRAYS, **DERIVED_STEP_ARRAYS}.items():
            out[k] = np.lib.format.open_memmap(tmp / f"{k}.npy", "w+", dt, (n_steps,))
        hashes = {k: _hasher_with_header(tmp / f"{k}.npy", a) for k, a in out.items()}
        # ep_step_start[id]: first cache row of episode ``id``'s steps (ids are 0..n-1 in a base dataset).
        ep_start = np.full(len(table), -1, dtype=np.int64)
        for s, o, rows, ids in shard_rows(root, manifest, table, key):
            k, m = len(rows["actions"]), len(rows["obs"])
            out["obs"][o : o + m] = rows["obs"]
            hashes["obs"].update(out["obs"][o : o + m].data)
            for name in (*STEP_ARRAYS, *DERIVED_STEP_ARRAYS):
                out[name][s : s + k] = rows[name]
                hashes[name].update(out[name][s : s + k].data)
            ep_start[ids] = s + rows["ep_first"]
        np.save(tmp / "ep_step_start.npy", ep_start)
        for a in out.values():
            a.flush()
        shapes = {k: list(a.shape) for k, a in out.items()}
        del out
        record = {k: {"bytes": (tmp / f"{k}.npy").stat().st_size, "shape": shapes[k], "dtype": _expected_dtype(k, key).str,
                      "sha256": hashes[k].hexdigest()} for k in shapes}  # fmt: skip
        record["ep_step_start"] = {"bytes": (tmp / "ep_step_start.npy").stat().st_size, "shape": [len(ep_start)],
                                   "dtype": np.dtype(np.int64).str, "sha256": file_sha256(tmp / "ep_step_start.npy")}  # fmt: skip
        meta = {"key": key, "arrays": record}
        (tmp / CACHE_META).write_text(json.dumps({**meta, "meta_sha256": _meta_digest(meta)}))
        if path.exists() or path.is_symlink():
            remove_cache_dir(path)
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            remove_cache_dir(tmp)


def _meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of meta.json's canonical content without this digest: a flipped byte in it reads as corrupt, not stale."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _hasher_with_header(f: Path, a: np.memmap) -> Any:
    """A sha256 fed the ``.npy`` header of ``f`` already; the data follows as it is written, in order."""
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        h.update(fh.read(a.offset))
    return h


def remove_cache_dir(d: Path) -> None:
    """Delete a cache folder (or a killed build's), but only the files a cache holds: a dataset from
    elsewhere may hold a symlink or another folder under that name, and rlgen deletes nothing it did not write."""
    if d.is_symlink() or d.is_file():
        d.unlink()  # a link itself, never what it points at
        return
    known = {f"{n}.npy" for n in ARRAY_NAMES} | {CACHE_META}
    entries = list(d.iterdir())
    foreign = [e.name for e in entries if e.name not in known or (e.is_dir() and not e.is_symlink())]
    if foreign:
        raise DatasetError(f"{d} holds {foreign[0]!r}, which rlgen's cache never writes; not deleting it. "
                           "Move it away and run again")  # fmt: skip
    for e in entries:
        e.unlink()
    d.rmdir()


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing); other processes wait.
    The kernel releases it if the holder dies, so a killed build never blocks the next one."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a planted symlink is refused
    except OSError as e:
        raise DatasetError(f"cannot create {lock_path} to build the dataset's cache ({e.strerror}); "
                           "the dataset directory must be writable the first time it is used") from e  # fmt: skip
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def open_checked(root: Path, manifest: dict[str, Any], table: np.ndarray, key: dict[str, Any], build: Any = None) -> dict[str, Any]:
    """Check the cache of the dataset at ``root`` and open it; build or rebuild it first (under the
    cache lock, checked again there) when it is absent, stale or corrupt. ``build(path, key)`` builds
    (default: ``build_cache``)."""
    path = root / CACHE_DIR
    state, problems = check_cache(path, key)
    if state != "ok":
        with exclusive_lock(root / CACHE_LOCK):
            state, problems = check_cache(path, key)  # another process may have rebuilt it meanwhile
            if state != "ok":
                if state == "corrupt":
                    log.warning("%s; rebuilding the cache from the shards", problems[0])
                if build is None:
                    build_cache(root, manifest, table, path, key)
                else:
                    build(path, key)
    return open_cache(path)
