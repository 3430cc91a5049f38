"""The configs shipped with rlgen: listed, shown and copied by ``rlgen configs``, found by name anywhere.

Every YAML file of the repository's ``configs/`` is package data (``rlgen/configs`` links to it in a source
checkout; a wheel holds the files), named by its path without ``.yaml``: ``ppo/minigrid_doorkey``,
``offline/bc``, ``study/procgen_expert``. A config argument that is not a file but names a shipped config
resolves to it, so ``rlgen train configs/ppo/minigrid_doorkey.yaml`` works from an empty directory after
``pip install`` as it does in a clone (``configs/ppo/minigrid_doorkey.yaml``, ``ppo/minigrid_doorkey.yaml``
and ``ppo/minigrid_doorkey`` all name it). A file of that path in the working directory always wins.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from rlgen.errors import RlgenError

#: Where the shipped configs are: ``rlgen/configs`` (a link to ``configs/`` in a checkout, files in a wheel).
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Path]:
    """Name (``kind/stem``) -> file of every shipped config, sorted by name."""
    if not SHIPPED_DIR.is_dir():
        return {}
    files = sorted(p for p in SHIPPED_DIR.rglob("*.yaml") if p.is_file())
    return {p.relative_to(SHIPPED_DIR).with_suffix("").as_posix(): p for p in files}


def shipped_name(text: str | Path) -> str | None:
    """The shipped config ``text`` names (``configs/ppo/x.yaml``, ``ppo/x.yaml``, ``ppo/x``), or None."""
    name = Path(str(text)).as_posix()
    for prefix in ("./", "configs/"):
        name = name.removeprefix(prefix)
    name = name.removesuffix(".yaml").removesuffix(".yml")
    return name if name in shipped_configs() else None


def resolve_config_path(path: str | Path) -> Path:
    """``path`` when it is a file; else the shipped config it names; else ``path`` unchanged (for the error)."""
    p = Path(path)
    if p.is_file():
        return p
    name = shipped_name(path)
    return shipped_configs()[name] if name is not None else p


def close_names(text: str | Path, n: int = 3) -> list[str]:
    """Shipped config names close to ``text`` (for "did you mean")."""
    name = Path(str(text)).as_posix().removeprefix("configs/").removesuffix(".yaml")
    return difflib.get_close_matches(name, list(shipped_configs()), n=n, cutoff=0.6)


def describe(path: Path, width: int = 100) -> str:
    """What a config is: the first sentence of its leading comment (up to ``width`` characters)."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text or line.startswith("#   "):  # code, a blank comment, an example command
            break
        words.append(text)
    sentence = " ".join(words)
    sentence = sentence.split(". ", 1)[0].rstrip(".:")
    return sentence if len(sentence) <= width else sentence[: width - 3].rstrip() + "..."


def find_shipped(name: str) -> Path:
    """The file of the shipped config ``name``; else one ``RlgenError`` with the closest names."""
    found = shipped_name(name)
    if found is None:
        close = close_names(name)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise RlgenError(f"no shipped config {name!r}{hint}; `rlgen configs ls` lists them")
    return shipped_configs()[found]


def copy_shipped(name: str, dest: Path, force: bool = False) -> Path:
    """Copy the shipped config ``name`` to ``dest`` (a file, or a directory to copy into); returns the file written.
    An existing file is kept unless ``force``."""
    from rlgen.atomic_files import write_text_atomic

    source = find_shipped(name)
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists() and not force:
        raise RlgenError(f"{str(dest)!r} exists; choose another file or pass --force to overwrite it")
    if not dest.parent.is_dir():
        raise RlgenError(f"no directory {str(dest.parent)!r} to copy into")
    write_text_atomic(dest, source.read_text())
    return dest
