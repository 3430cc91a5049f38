"""``rlgen datasets ls``: the dataset directories under a path, as a table whose columns fit their contents."""

from __future__ import annotations

from pathlib import Path

from rlgen.data.dataset import load_dataset
from rlgen.data.format import MANIFEST
from rlgen.errors import RlgenError

#: Column names and whether each is right-aligned (the numbers).
COLUMNS: tuple[tuple[str, bool], ...] = (("dataset", False), ("env", False), ("skill", False), ("episodes", True),
                                         ("transitions", True), ("levels", True), ("return", True))  # fmt: skip


def dataset_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a dataset, else its sub-directories that are, sorted."""
    if (path / MANIFEST).is_file():
        return [path]
    return sorted(p.parent for p in path.glob(f"*/{MANIFEST}"))


def listing_lines(dirs: list[Path]) -> list[str]:
    """A header and one line per dataset (name, env, skill, episodes, transitions, distinct levels, mean return),
    each column as wide as its widest cell; an unreadable dataset gets its name and the reason."""
    rows: list[list[str]] = []
    broken: dict[int, str] = {}
    for d in dirs:
        try:
            ds = load_dataset(d)
        except RlgenError as e:
            broken[len(rows)] = f"{d.name} (unreadable: {e})"
            rows.append([])
            continue
        rows.append([d.name, ds.env, str(ds.manifest.get("skill", "subset")), f"{ds.num_episodes:,}", f"{ds.num_transitions:,}",
                     str(len(ds.levels)), f"{float(ds.episodes['return'].mean()):.3f}"])  # fmt: skip
    widths = [max([len(name)] + [len(r[i]) for r in rows if r]) for i, (name, _) in enumerate(COLUMNS)]

    def line(cells: list[str]) -> str:
        return " ".join(c.rjust(w) if right else c.ljust(w) for c, w, (_, right) in zip(cells, widths, COLUMNS)).rstrip()

    return [line([name for name, _ in COLUMNS])] + [broken[i] if i in broken else line(r) for i, r in enumerate(rows)]
