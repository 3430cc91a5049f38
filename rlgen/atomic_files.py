"""Files written whole or not at all: a temporary name in the same directory, then ``os.replace``.

A kill at any moment leaves the previous file or the new one, never half of one. Temporary names are
unique per process and thread, so two writers of one file never share a temporary file.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` as the whole of ``path`` (its parent is created); with ``fsync``, flushed to disk first."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(p)
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, p)
    return p


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
