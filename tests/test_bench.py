"""The benchmarks' --quick modes run and print their ratios (no timing assertions)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_envs_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "envs.py"), "--quick"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[-1] == "ratio"
    game, envs, raw, ours, ratio = lines[1].split()
    assert game == "coinrun" and envs == "16"
    assert float(ratio) > 0 and float(raw.replace(",", "")) > 0


def test_bench_ppo_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "ppo.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[-1] == "ratio" and len(lines) == 3
    assert all(float(line.split()[-1]) > 0 for line in lines[1:])
    assert "Gym has been unmaintained" not in result.stderr


def test_bench_data_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "data.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[-1] == "ratio" and lines[5].startswith("(d) shard codec")
    assert all(float(line.split()[-1]) > 0 for line in lines[1:4])
    codecs = [line for line in lines[6:-1]]  # every candidate on both envs, each with its fraction of raw
    assert len(codecs) == 2 * 15 and all(0 < float(line.split()[-1]) < 1 for line in codecs)
    assert any(line.startswith("hwc zstd-19 ldm27") for line in codecs) and any(line.startswith("hwc xz-9") for line in codecs)
    assert lines[-1].startswith("load average")  # the machine's load, for the ratios above


def test_bench_offline_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "offline.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[-1] == "ratio" and [line.split()[0] for line in lines[1:-1]] == ["bc", "bcq", "cql", "dt", "iql", "bct"]
    assert lines[-1].startswith("median of") and "load average" in lines[-1]
    assert all(float(line.split()[-1]) > 0 for line in lines[1:5])
    assert "Gym has been unmaintained" not in result.stderr


def test_bench_evaluate_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "evaluate.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[-1] == "bc" and [line.split()[0] for line in lines[1:4]] == ["bc", "dt", "bct"]
    assert float(lines[1].split()[-1]) == 1.0 and all(float(line.split()[-1]) > 0 for line in lines[2:4])
    assert "load average" in lines[-1]


def test_bench_offline_jax_quick():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "offline_jax.py"), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("load average before") and lines[-1].startswith("load average after")
    assert lines[1].startswith("matmul peak") and all(float(x.split()[-1].replace(",", "")) > 0 for x in lines[1].split(": ")[1].split(", "))
    assert lines[2].split()[-1] == "ratio" and [line.split()[0] for line in lines[3:-2]] == ["bc", "iql", "cql", "dt"]
    for row in lines[3:-2]:  # seeds, then every rate, FLOP count and ratio a positive number
        assert row.split()[2] == "5" and all(float(x.rstrip("x").replace(",", "")) > 0 for x in row.split()[1:])
