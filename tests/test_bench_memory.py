"""bench/memory.py (issue 18, part 7): its per-phase peak memory is measured per phase, and --quick runs."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.bench_scripts import load_bench

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_bench("memory")


def test_each_phase_has_its_own_peak():
    """A phase's peak is its own (VmHWM reset at its start), and the sampling thread sees the anonymous
    memory of an array that is gone again by the phase's end."""
    meter = _bench().PhaseMemory()
    with meter.phase("big"):
        a = np.ones(300 << 20, np.uint8)  # 300 MiB, touched
        time.sleep(0.2)  # the sampler runs between numpy calls: give it the GIL while the array lives (a loaded machine)
        del a
    with meter.phase("small"):
        b = np.ones(30 << 20, np.uint8)
        del b
    big, small = meter.rows
    # anonymous memory against the anonymous start: the test process's file-backed pages (hundreds of MiB inside a
    # full test run) are in start_rss, not in peak_anon
    assert big["peak_rss"] - big["start_rss"] >= 290 << 20 and big["peak_anon"] - big["start_anon"] >= 250 << 20
    assert small["peak_rss"] < big["peak_rss"] - (200 << 20)  # not the earlier phase's high-water mark
    assert small["peak_rss"] - small["start_rss"] >= 25 << 20


def test_synthetic_frames_compress_like_procgen(tmp_path):
    bench = _bench()
    bench.write_synthetic(tmp_path / "d", 1_000)
    from rlgen.data import load_dataset

    ds = load_dataset(tmp_path / "d")
    assert ds.num_transitions >= 1_000 and ds.observation_shape == (3, 64, 64) and ds.num_actions == 15
    stored = sum(f.stat().st_size for f in (tmp_path / "d" / "shards").rglob("*") if f.is_file())
    assert stored / ds.num_transitions < 0.1 * 3 * 64 * 64  # not incompressible noise: shards far below the raw frames


def test_bench_memory_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "memory.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("dataset: 3,") and lines[1].split()[0] == "phase"
    rows = [line.split() for line in lines[2:7]]
    assert [r[0] for r in rows] == ["import", "write", "cache", "bc", "dt"]
    assert all(float(r[3]) >= float(r[2]) > 0 and r[-1] in ("anonymous", "file-backed") for r in rows)
    assert lines[-2].startswith("highest peak: ") and lines[-1].startswith("load average")
