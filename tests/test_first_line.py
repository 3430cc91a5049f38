"""Start-up (issue 18, part 4): `rlgen train` and `rlgen evaluate` say they started before importing torch,
which alone takes seconds; the status line is the command's first output (bench/startup.py times it)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "old_runs"

# The child records, at its first write to stderr, whether torch was already imported.
PROBE = """
import sys
from rlgen.cli import main
class Probe:
    def __init__(self, stream): self.stream, self.first = stream, None
    def write(self, text):
        if self.first is None and text.strip():
            self.first = (text.strip().splitlines()[0], "torch" in sys.modules)
        return self.stream.write(text)
    def flush(self): self.stream.flush()
    def isatty(self): return TTY
    def __getattr__(self, name): return getattr(self.stream, name)
probe = Probe(sys.stderr); sys.stderr = probe
rc = main(ARGS)
sys.stderr = probe.stream
print("PROBE", rc, repr(probe.first))
"""


def first_stderr_line(args: list[str], cwd: Path, tty: bool = True) -> tuple[str, str, bool]:
    code = PROBE.replace("ARGS", repr(args)).replace("TTY", repr(tty))
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith("PROBE ")][-1]
    rc, first = line.split(" ", 2)[1:]
    if first == "None":
        return rc, "", False
    text, torch_loaded = eval(first)
    return rc, text, torch_loaded


@pytest.mark.parametrize("run", ["ppo", "bc"])
def test_evaluate_says_it_started_before_torch_loads(run, tmp_path):
    shutil.copytree(FIXTURES / run, tmp_path / run)
    shutil.copytree(FIXTURES / "dataset", tmp_path / "dataset")
    rc, text, torch_loaded = first_stderr_line(["evaluate", str(tmp_path / run), "--episodes", "1", "--which", "train"], tmp_path)
    assert rc == "0"
    assert text.startswith(f"rlgen: evaluating {tmp_path / run} on train levels, 1 episodes each"), text
    assert not torch_loaded


def test_train_says_it_started_before_torch_loads(tmp_path):
    shutil.copytree(FIXTURES / "dataset", tmp_path / "dataset")
    args = ["train", str(ROOT / "configs/offline/bc.yaml"), f"dataset={tmp_path / 'dataset'}", "steps=2", "batch_size=4",
            "network=minigrid_cnn", "eval.enabled=false", "checkpoint_every=2", f"out_dir={tmp_path / 'bc'}"]  # fmt: skip
    rc, text, torch_loaded = first_stderr_line(args, tmp_path)
    assert rc == "0"
    assert text.startswith(f"rlgen: bc on {tmp_path / 'dataset'} -> {tmp_path / 'bc'}: inputs checked"), text
    assert not torch_loaded


def test_the_status_line_is_for_terminals_only(tmp_path):
    """Piped or captured, stderr keeps only warnings and errors (a bad input stays one line)."""
    shutil.copytree(FIXTURES / "ppo", tmp_path / "ppo")
    rc, text, _ = first_stderr_line(["evaluate", str(tmp_path / "ppo"), "--episodes", "1", "--which", "train"], tmp_path, tty=False)
    assert rc == "0" and text == ""
