"""The corruption sweep of issue 13's done-when: flip a byte in every file of a small dataset, of its cache
and of a saved subset, one file (and one byte) at a time. Each flip must be caught by `verify` and must
never reach a sampled batch: sampling (what every offline agent trains from) either fails with a
DatasetError or returns exactly the batches of the intact dataset (a damaged cache is rebuilt from the
checked shards; a damaged shard behind a valid cache is not read).

Rule for bytes that carry no data: there are none left to exempt. JSON files are covered by checksums of
their content (``content_sha256`` of the manifests, ``meta_sha256`` of the cache record, the manifest's
sha256 of ``episodes.jsonl``), and a flipped whitespace byte makes the JSON invalid. The one file skipped
is ``cache.lock``: it is empty (its bytes are never read; only its ``flock`` matters).
"""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import DatasetError, load_dataset, write_dataset
from rlgen.data.cache import ARRAY_NAMES

from .conftest import make_episodes, manifest


def sample(root: Path) -> dict[str, np.ndarray]:
    ds = load_dataset(root)
    out = {f"t_{k}": np.asarray(v) for k, v in ds.sample_transitions(48, np.random.default_rng(1)).items()}
    out.update({f"w_{k}": np.asarray(v) for k, v in ds.sample_windows(12, 4, np.random.default_rng(2)).items()})
    return out


def caught_by_verify(root: Path) -> bool:
    try:
        return bool(load_dataset(root).verify())
    except DatasetError:
        return True


def sampling_outcome(root: Path, reference: dict[str, np.ndarray]) -> str:
    """``"error"`` (a DatasetError), ``"intact"`` (batches equal the reference) or ``"SILENT"``."""
    try:
        got = sample(root)
    except DatasetError:
        return "error"
    same = got.keys() == reference.keys() and all(np.array_equal(got[k], reference[k]) for k in reference)
    return "intact" if same else "SILENT"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """``toy/`` (60 episodes, 4 shards) with its cache built, and ``sub/``, a saved subset of it."""
    base = tmp_path_factory.mktemp("pristine")
    root = write_dataset(base / "toy", make_episodes(np.random.default_rng(0), 60), manifest(), shard_transitions=100)
    load_dataset(root).subset(levels=[1, 2, 3], seed=0).save_subset(base / "sub")
    load_dataset(root).cache()
    return base


def flip_cases(pristine: Path) -> list[tuple[str, int]]:
    """(file relative to the pristine folder, byte offset): first, last and two seeded bytes of every file."""
    rng = np.random.default_rng(0)
    cases = []
    for f in sorted(p for p in pristine.rglob("*") if p.is_file()):
        size = f.stat().st_size
        if size == 0:  # cache.lock
            continue
        for pos in sorted({0, size - 1, *rng.integers(0, size, 2).tolist()}):
            cases.append((str(f.relative_to(pristine)), int(pos)))
    return cases


def test_every_flipped_byte_is_caught_and_never_sampled(pristine, tmp_path, caplog):
    reference = {"toy": sample(pristine / "toy"), "sub": sample(pristine / "sub")}
    files = {str(p.relative_to(pristine)) for p in pristine.rglob("*") if p.is_file()}
    assert {"toy/manifest.json", "toy/episodes.jsonl", "toy/cache/obs.npy", "toy/cache/meta.json", "sub/manifest.json"} <= files
    assert sum(f.startswith("toy/shards/") for f in files) == 4
    assert {f for f in files if f.startswith("toy/cache/")} == {f"toy/cache/{n}.npy" for n in ARRAY_NAMES} | {"toy/cache/meta.json"}
    failures = []
    cases = flip_cases(pristine)
    caplog.set_level(logging.ERROR, logger="rlgen")  # the rebuild warnings are expected here
    for i, (rel, pos) in enumerate(cases):
        for cache in ("kept", "removed"):
            if cache == "removed" and "/cache/" in rel:
                continue
            work = tmp_path / f"case{i}-{cache}"
            shutil.copytree(pristine, work, symlinks=True)
            f = work / rel
            data = bytearray(f.read_bytes())
            data[pos] ^= 1 << (i % 8)
            f.write_bytes(bytes(data))
            if cache == "removed":
                shutil.rmtree(work / "toy" / "cache")
            which = "sub" if rel.startswith("sub/") else "toy"
            if not caught_by_verify(work / which):
                failures.append(f"{rel}@{pos} (cache {cache}): verify says OK")
            if "/cache/" in rel:  # the cache is rebuilt before the next verify would see it again
                shutil.copy(pristine / rel, f)
                data = bytearray(f.read_bytes())
                data[pos] ^= 1 << (i % 8)
                f.write_bytes(bytes(data))
            for name in ("toy", "sub"):
                outcome = sampling_outcome(work / name, reference[name])
                if outcome == "SILENT" or (cache == "removed" and name == which and outcome != "error"):
                    failures.append(f"{rel}@{pos} (cache {cache}): sampling {name} gave {outcome}")
            shutil.rmtree(work)
    assert len(cases) > 50
    assert failures == []


def npy_data_offset(path: Path) -> int:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version](f)
        return f.tell()


def test_every_byte_of_every_cache_header_is_caught_without_a_traceback(pristine, tmp_path, capsys):
    """Review of issue 13, finding 5: byte 10 (bit 2) of cache/ep_step_start.npy gave a tokenize.TokenError
    traceback from numpy's header parser. Each byte of each cache file's .npy header, three flips each
    (bit pos % 8, bit (pos + 3) % 8, all bits), must read as a corrupt cache: what opening and verify check."""
    from rlgen.data.cache import check_cache

    work = tmp_path / "toy"
    shutil.copytree(pristine / "toy", work)
    key = load_dataset(work).cache_key()
    missed = []
    for name in ARRAY_NAMES:
        f = work / "cache" / f"{name}.npy"
        good = f.read_bytes()
        for pos in range(npy_data_offset(f)):
            for mask in (1 << (pos % 8), 1 << ((pos + 3) % 8), 0xFF):
                data = bytearray(good)
                data[pos] ^= mask
                f.write_bytes(bytes(data))
                state, problems = check_cache(work / "cache", key)
                if state != "corrupt" or not problems or "\n" in problems[0]:
                    missed.append(f"{name}.npy@{pos}^{mask:#x}: {state}")
        f.write_bytes(good)
    assert missed == []
    # the review's exact case, through the command: one problem line, exit 1
    f = work / "cache" / "ep_step_start.npy"
    data = bytearray(f.read_bytes())
    data[10] ^= 1 << 2
    f.write_bytes(bytes(data))
    assert main(["datasets", "verify", str(work)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "ep_step_start.npy" in out.out
