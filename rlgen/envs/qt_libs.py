"""Load the Qt5 Core and Gui shared libraries that EnvPool's Procgen module links against.

EnvPool's ``procgen_envpool`` extension needs ``libQt5Core.so.5`` and ``libQt5Gui.so.5`` at import
time but does not ship them. The ``PyQt5-Qt5`` wheel does; loading both with ``RTLD_GLOBAL`` before
``import envpool.procgen`` makes their symbols visible to the extension. A system Qt
(``apt install libqt5gui5``) works as well and is tried second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from rlgen.errors import DependencyError

QT_LIBRARIES: tuple[str, ...] = ("libQt5Core.so.5", "libQt5Gui.so.5")

FIX_HINT = (
    "EnvPool's Procgen needs the Qt5 Core and Gui libraries. Fix with one of: "
    "`pip install PyQt5-Qt5` (rlgen depends on it, so `pip install -e .` again), or "
    "`apt install libqt5gui5` for a system Qt."
)

_loaded: list[str] | None = None


def pip_qt_dirs() -> list[Path]:
    """Directories holding the Qt5 libraries of the ``PyQt5-Qt5`` wheel, if installed.

    ``PyQt5`` from that wheel is a namespace package (``PyQt5.__file__`` is None), so the
    libraries are found through the spec's search locations.
    """
    try:
        spec = importlib.util.find_spec("PyQt5")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(loc) / "Qt5" / "lib" for loc in spec.submodule_search_locations]


def load_qt_libraries(search_dirs: Sequence[Path] | None = None, allow_system: bool = True) -> list[str]:
    """Load Qt5 Core and Gui globally; return the paths (or sonames) loaded.

    Args:
        search_dirs: where to look first; default: the ``PyQt5-Qt5`` wheel's ``Qt5/lib``.
        allow_system: fall back to the dynamic loader's search path (a system Qt).

    Raises:
        DependencyError: neither source provides both libraries; the message says how to fix it.
    """
    global _loaded
    if _loaded is not None and search_dirs is None:
        return _loaded
    dirs = list(pip_qt_dirs() if search_dirs is None else search_dirs)
    errors: list[str] = []
    for d in dirs:
        paths = [d / name for name in QT_LIBRARIES]
        if not all(p.is_file() for p in paths):
            errors.append(f"{d}: not found")
            continue
        try:
            for p in paths:
                ctypes.CDLL(os.fspath(p), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            errors.append(f"{d}: {e}")
            continue
        loaded = [os.fspath(p) for p in paths]
        if search_dirs is None:
            _loaded = loaded
        return loaded
    if allow_system:
        try:
            for name in QT_LIBRARIES:
                ctypes.CDLL(ctypes.util.find_library(name[3:].split(".so")[0]) or name, mode=ctypes.RTLD_GLOBAL)
            loaded = list(QT_LIBRARIES)
            if search_dirs is None:
                _loaded = loaded
            return loaded
        except OSError as e:
            errors.append(f"system: {e}")
    tried = "; ".join(errors) or "no PyQt5-Qt5 installation found"
    raise DependencyError(f"cannot load Qt5 for Procgen ({tried}). {FIX_HINT}")
