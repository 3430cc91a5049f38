"""The prepared GPU check (bench/gpu_check.sh, issue 18 part 8), tried here on CPU: its dry run end to end,
and its Python driver with only the GPU machine's packages importable (the preinstalled ones and the
wheels of bench/gpu_wheels.txt), so a wheel missing from the list fails here, not there."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "bench" / "gpu_wheels.txt"

# Run in a fresh interpreter: refuses every top-level import whose distribution is neither preinstalled on
# the GPU machine (the named packages and everything they require, read from this venv's metadata) nor in
# the wheel list, then runs bench/gpu_check.py. Optional imports (sklearn's of pandas) fail as they would there.
BLOCKER = r"""
import importlib.abc, importlib.machinery, importlib.metadata as md, runpy, sys
from packaging.requirements import Requirement

def norm(name):
    return name.lower().replace("-", "_").replace(".", "_")

def closure(names):
    seen, todo = set(), list(names)
    while todo:
        d = md.distribution(todo.pop())
        if norm(d.metadata["Name"]) in seen:
            continue
        seen.add(norm(d.metadata["Name"]))
        for r in d.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": "", "python_version": "3.12", "python_full_version": "3.12.0"}):
                todo.append(req.name)
    return seen

preinstalled, wheels = sys.argv[1].split(","), sys.argv[2].split(",")
allowed = closure(preinstalled) | {norm(w) for w in wheels} | {"rlgen"}
owners = md.packages_distributions()
blocked = set()

class Filtered(importlib.abc.MetaPathFinder):
    # the path finder, blind to the distributions the GPU machine lacks (absent for imports and find_spec alike)
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        dists = owners.get(name)
        if "." not in name and name not in sys.stdlib_module_names and dists and not any(norm(d) in allowed for d in dists):
            blocked.add(name)
            return None
        return self.finder.find_spec(name, path, target)
    def invalidate_caches(self):
        self.finder.invalidate_caches()

sys.meta_path[:] = [Filtered(f) if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
assert any(isinstance(f, Filtered) for f in sys.meta_path)
sys.argv = [sys.argv[3], *sys.argv[4:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("blocked imports:", ",".join(sorted(blocked)), file=sys.stderr)
"""


def wheel_list() -> tuple[list[str], list[str]]:
    """(preinstalled names, [name==version, ...]) from bench/gpu_wheels.txt."""
    text = WHEELS.read_text()
    preinstalled = re.search(r"^# preinstalled: (.+)$", text, re.M).group(1).split()
    pins = [line.split("#")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return preinstalled, pins


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_dry_run_end_to_end(tmp_path):
    """`bench/gpu_check.sh --cpu`: every section runs in its own process and prints its rows; the log under $OUT."""
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu"], capture_output=True, text=True, timeout=900,
                            env={**env(), "PYTHON": sys.executable, "OUT": str(out)})  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if re.match(r"== \w+: [\d.]+ s$", line)] == ["env:", "sampler:", "offline:", "xland:"]
    rows = {line.split()[0]: line.split() for line in lines if re.match(r"(bc|cql|iql|dt|bct) +4 ", line)}
    assert list(rows) == ["bc", "cql", "iql", "dt", "bct"]
    assert all(float(rows[a][-1]) > 0 for a in ("bc", "cql", "dt")) and rows["iql"][-1] == rows["bct"][-1] == "-"
    assert [line.split()[0] for line in lines if re.match(r"(transitions 256|windows 512x10) ", line)] == ["transitions", "windows"]
    assert any(line.startswith("env random    16 ") for line in lines)
    assert lines[-1].startswith("gpu_check: total ") and lines[-1].endswith("0 section(s) not complete")
    assert (out / "gpu_check.log").read_text().splitlines()[-1] == lines[-1]


def test_driver_imports_nothing_outside_the_wheel_list(tmp_path):
    """The driver's every section with only the preinstalled packages and the listed wheels importable."""
    preinstalled, pins = wheel_list()
    names = [p.split("==")[0] for p in pins]
    args = [sys.executable, "-c", BLOCKER, ",".join(preinstalled), ",".join(names), str(ROOT / "bench" / "gpu_check.py"), "--cpu", "--data", str(tmp_path / "d")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== xland: " in result.stdout and "blocked imports:" in result.stderr


def test_wheel_list_is_what_the_dry_run_tests():
    """Each wheel pinned to the version installed here (what the dry run ran with), none already preinstalled
    there unless marked (a newer copy on PYTHONPATH shadows the preinstalled one), and no duplicates."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    preinstalled, pins = wheel_list()
    names = [Requirement(p).name.lower().replace("_", "-") for p in pins]
    assert len(set(names)) == len(names)
    for pin in pins:
        req = Requirement(pin)
        assert str(req.specifier).startswith("=="), f"{pin}: pin an exact version"
        assert md.version(req.name) == str(req.specifier)[2:], f"{pin}: this venv has {md.version(req.name)}"
    marked = {line.split("==")[0] for line in WHEELS.read_text().splitlines() if "# over preinstalled" in line}
    assert not (set(names) - marked) & {p.lower() for p in preinstalled}


def test_budgets_fit_in_eight_minutes():
    """The GPU-mode time limits of the sections plus the install's fit in the 480 s the check may take."""
    text = (ROOT / "bench" / "gpu_check.sh").read_text()
    budgets = [int(x) for x in re.findall(r"\[\w+\]=(\d+)", re.search(r"declare -A BUDGET=\((.*)\)", text).group(1))]
    install = int(re.search(r"timeout (\d+) \"\$PY\" -m pip install", text).group(1))
    assert len(budgets) == 4 and sum(budgets) + install <= 470


def test_bad_argument_is_one_line():
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--gpu"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip() == "gpu_check.sh: unknown argument '--gpu' (allowed: --cpu)"
