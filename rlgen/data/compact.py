"""``rlgen datasets compact``: re-encode a finished dataset's shards at another codec grade (``archive`` by default).

Each shard is decoded (its sha256 checked against the manifest first) and written again, in parallel worker
processes, as a new file ``shards/<name>.<codec>.zst`` (atomic: temporary file, fsync, rename). Then, in the
parent, the manifest entry is pointed at it (``stored_as``, ``sha256``, ``bytes``, ``codec``) and the manifest
rewritten atomically with its counts and ``content_sha256``; only then is the old file removed. So a kill at any
moment leaves a valid dataset, some of its shards compacted: running the command again skips every shard
whose entry already records the codec, and removes the old files a kill left behind.

Reading a compacted shard gives the same arrays bit for bit (the codecs are lossless, the observation layout
is recorded in the shard header). ``episodes.jsonl`` is not touched: its ``shard`` column names the entry's
``file``, which stays. The cache, keyed on the shards' sha256, is rebuilt from the new shards on next use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rlgen.atomic_files import remove_temporaries, write_bytes_atomic
from rlgen.data.codec import LEVELS, Codec
from rlgen.data.dataset import COMPACTED_FROM, parent_digest
from rlgen.data.format import MANIFEST, SCHEMA_VERSION, SHARD_DIR, DatasetError, inside, read_manifest, read_shard, rewrite_shard, shard_file, with_digest


@dataclass
class CompactResult:
    """What a compaction did: shards re-encoded now and skipped (already at the codec), bytes before and after
    (all shards), and the codec's name."""

    compacted: int
    skipped: int
    bytes_before: int
    bytes_after: int
    codec: str

    def summary(self, path: str | Path) -> str:
        """One line for the CLI."""
        frac = self.bytes_after / self.bytes_before if self.bytes_before else 1.0
        return (f"{path}: {self.compacted} shard(s) re-encoded with {self.codec}, {self.skipped} already were; "
                f"{self.bytes_before:,} -> {self.bytes_after:,} bytes ({frac:.3f})")  # fmt: skip


def _target_name(entry: dict[str, Any], codec: Codec) -> str:
    """``shards/shard_00000_00001.zstd-19-ldm27.zst`` for entry ``shards/shard_00000_00001.zst``."""
    stem = entry["file"][: -len(".zst")] if entry["file"].endswith(".zst") else entry["file"]
    return f"{stem}.{codec.name}.zst"


def recode_shard(root: str, entry: dict[str, Any], frame_checksum: bool, codec: Codec) -> dict[str, Any]:
    """Worker: decode ``entry``'s shard (checked against its sha256) and write it with ``codec`` beside it.
    Returns the new file's ``{"stored_as", "sha256", "bytes", "codec"}``."""
    base = Path(root)
    source = inside(base, shard_file(entry), base / MANIFEST, "shard file")
    content = read_shard(source, sha256=entry["sha256"], frame_checksum=frame_checksum)
    target = _target_name(entry, codec)
    info = rewrite_shard(inside(base, target, base / MANIFEST, "shard file"), content, codec)
    return {"stored_as": target, **info}


def _stale_files(root: Path, entry: dict[str, Any], used: set[Path]) -> list[Path]:
    """Files an interrupted compaction may have left for ``entry``: its other encodings, never a file in ``used``
    (the resolved files the manifest's entries read) and never one outside ``root`` (``_compact`` refuses such
    a ``file`` before any work; ``inside`` here as well, because this deletes)."""
    names = {entry["file"], *(_target_name(entry, c) for c in LEVELS.values())}
    paths = {inside(root, n, root / MANIFEST, "shard file") for n in names} - used
    return [p for p in sorted(paths) if p.is_file()]


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker within a second of its parent's death (a kill -9 runs no clean-up, and
    an orphaned worker would wait on its job queue forever); a job cut short leaves only a temporary file, which
    the next compaction removes."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


#: The lock file a compaction holds in the dataset directory (two at once would each rewrite the manifest).
LOCK = ".compact.lock"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"another `rlgen datasets compact` is running on {root}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def compact_dataset(path: str | Path, level: str = "archive", workers: int | None = None,
                    on_shard: Callable[[int, int], None] | None = None) -> CompactResult:  # fmt: skip
    """Re-encode every shard of the dataset at ``path`` with the codec grade ``level`` (``rlgen.data.codec.LEVELS``).

    Args:
        workers: processes compressing at once (default: the machine's CPUs, at most the shards to do);
            1 compresses in this process.
        on_shard: called as ``on_shard(done, total)`` after each shard's manifest update (progress).

    Raises:
        DatasetError: not a dataset, a subset (compact its parent), an unknown ``level``, ``workers`` < 1, or a
            shard that is missing or changed (named; the shards compacted before it stay compacted).
    """
    if level not in LEVELS:
        raise DatasetError(f"unknown compaction level {level!r}; choose one of: {', '.join(LEVELS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DatasetError(f"--workers must be a positive int, got {workers!r}")
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.get("kind", "dataset") != "dataset":
        raise DatasetError(f"{root} is a subset of {manifest.get('parent')!r}; compact its parent dataset instead")
    with _locked(root):
        return _compact(root, read_manifest(root), LEVELS[level], workers, on_shard)


def _compact(root: Path, manifest: dict[str, Any], codec: Codec, workers: int | None,
             on_shard: Callable[[int, int], None] | None) -> CompactResult:  # fmt: skip
    frame_checksum = int(manifest["schema_version"]) >= 2
    for e in manifest["shards"]:  # every path refused before any work: the one read and the name clean-up deletes
        inside(root, shard_file(e), root / MANIFEST, "shard file")
        inside(root, e["file"], root / MANIFEST, "shard file")
    remove_temporaries(root / SHARD_DIR)
    before = sum(int(e.get("bytes", 0)) for e in manifest["shards"])
    todo = [i for i, e in enumerate(manifest["shards"]) if e.get("codec") != codec.name]
    state = {"manifest": manifest, "done": 0}

    def settle(i: int, info: dict[str, Any]) -> None:
        m = state["manifest"]
        old = m["shards"][i]
        shards = [*m["shards"][:i], {**old, **info}, *m["shards"][i + 1 :]]
        counts = {**m.get("counts", {}), "bytes": int(sum(int(s.get("bytes", 0)) for s in shards))}
        # schema 4 at the first compacted shard, so an older rlgen refuses the dataset rather than misread channel-last
        # bytes; but a schema 1 dataset only once every shard is re-encoded: schema >= 2 readers require the frame
        # checksums its old shards lack
        version = SCHEMA_VERSION if int(m["schema_version"]) >= 2 or state["done"] + 1 == len(todo) else m["schema_version"]
        earlier = m.get(COMPACTED_FROM) if isinstance(m.get(COMPACTED_FROM), list) else []
        m = with_digest({**m, "schema_version": version, "shards": shards, "counts": counts, COMPACTED_FROM: [*earlier, parent_digest(m)]})
        write_bytes_atomic(root / MANIFEST, json.dumps(m, indent=2).encode(), fsync=True)
        state["manifest"] = m
        previous = inside(root, shard_file(old), root / MANIFEST, "shard file")
        if previous not in {inside(root, shard_file(e), root / MANIFEST, "shard file") for e in shards}:  # no entry reads it now
            previous.unlink(missing_ok=True)
        state["done"] += 1
        if on_shard is not None:
            on_shard(state["done"], len(todo))

    n = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    if n == 1:
        for i in todo:
            settle(i, recode_shard(str(root), manifest["shards"][i], frame_checksum, codec))
    else:
        # spawned, not forked: a forked worker inherits the lock's descriptor and, after a kill -9 of this process,
        # lives on (waiting on its job queue) holding the lock, so every retry would be refused
        with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:  # fmt: skip
            pending: dict[Future, int] = {}
            queue = list(todo)
            try:
                while queue or pending:
                    while queue and len(pending) < n:  # a bounded queue: each job holds a decoded shard in a worker
                        i = queue.pop(0)
                        pending[pool.submit(recode_shard, str(root), manifest["shards"][i], frame_checksum, codec)] = i
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for job in finished:
                        settle(pending.pop(job), job.result())
            except BaseException:
                for job in pending:
                    job.cancel()
                raise
    used = {inside(root, shard_file(e), root / MANIFEST, "shard file") for e in state["manifest"]["shards"]}
    for e in state["manifest"]["shards"]:  # old files of shards whose manifest update a kill came right after
        for stale in _stale_files(root, e, used):
            stale.unlink()
    after = sum(int(e.get("bytes", 0)) for e in state["manifest"]["shards"])
    return CompactResult(len(todo), len(manifest["shards"]) - len(todo), before, after, codec.name)
