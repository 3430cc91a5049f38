"""Files written whole or not at all: a fresh temporary file in the same directory, then ``os.replace``.

A kill at any moment leaves the previous file or the new one, never half of one. The temporary file is
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name, so it is always a new file of ours:
a symlink (or any file) planted in a run or dataset directory under a temporary name is never opened,
followed or overwritten, and two writers of one file never share a temporary file. ``os.replace``
renames onto the target itself, so a symlink planted as the target is replaced, not followed.

Every rlgen write of a whole file goes through :func:`atomic_writer` (or the helpers built on it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

#: ``O_NOFOLLOW``/``O_CLOEXEC`` where the platform has them (Linux and macOS do).
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
#: Suffix of every temporary file (``.<name>.<16 hex>.tmp``): what a killed writer may leave behind.
TMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """A fresh, unpredictable temporary name beside ``path``: ``.<name>.<16 hex digits>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}{TMP_SUFFIX}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one :func:`temporary_name` makes (a leftover of a killed writer)."""
    parts = name.rsplit(".", 2)
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and len(parts) == 3 and len(parts[1]) == 16


def _create_temporary(path: Path) -> tuple[int, Path]:
    for _ in range(100):  # a clash of 64 random bits means something else is creating these names: give up
        tmp = temporary_name(path)
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp  # 0o666 & ~umask, like open(path, "w")
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a fresh temporary file beside {path}")


@contextlib.contextmanager
def atomic_writer(path: str | Path, fsync: bool = True) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` (its parent is created) when the block ends without an error.

    With ``fsync`` the data reaches the disk before the rename. If the block raises, the temporary file
    is removed and ``path`` is left as it was.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(p)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` as the whole of ``path`` (its parent is created); with ``fsync``, flushed to disk first."""
    with atomic_writer(path, fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, fsync: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode(), fsync=fsync)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """``data`` as JSON (indented by ``indent``), atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent))


def write_lines_atomic(path: str | Path, lines: Iterable[str], fsync: bool = False) -> Path:
    """One line per item (a newline added to each), atomically."""
    return write_text_atomic(path, "".join(line + "\n" for line in lines), fsync=fsync)


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any], fsync: bool = False) -> Path:
    """One JSON value per line, atomically."""
    return write_lines_atomic(path, (json.dumps(row) for row in rows), fsync=fsync)


def remove_temporaries(directory: str | Path) -> int:
    """Delete the temporary files killed writers left in ``directory`` (names of :func:`temporary_name`;
    a symlink under such a name is unlinked itself, never followed). Returns how many. Call it only
    where no other writer can be at work (under the directory's lock)."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    n = 0
    for entry in d.iterdir():
        if is_temporary_name(entry.name) and (entry.is_symlink() or entry.is_file()):
            entry.unlink(missing_ok=True)
            n += 1
    return n
