"""The README's Python examples run (issue 16, item 11): every ```python block of README.md, each in a fresh
process, from a temporary directory holding a copy of ``tests/fixtures/`` (the blocks read their runs and
datasets from there; whatever they write stays in the copy). A block marked ``<!-- no-test -->`` on the line
before its fence (it needs a GPU, a 1M-transition dataset, or it is a fragment) is skipped, and the blocks of
the "Use rlgen from Python" sections never may be."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NO_TEST = "<!-- no-test -->"
#: a fence opening a Python block, however it is spelled (```py, ``` python, ```python3, ```python title=...)
PYTHON_FENCE = re.compile(r"^```\s*(py|python|python3)(\s.*)?$", re.IGNORECASE)
#: sections whose examples a user copies first: each must have blocks, and none may be skipped
RUN_ALWAYS = ("Use rlgen from Python", "Add your own environment", "Add your own algorithm")
#: seconds one block may take (each takes seconds on an idle 2-core machine; the margin is for a loaded one)
TIME_LIMIT = 300


@dataclasses.dataclass(frozen=True)
class Block:
    """One ```python block: ``line`` is the README line (1-based) of its first line of code."""

    line: int
    code: str
    section: str
    skip: bool

    @property
    def first_line(self) -> str:
        return next((s for s in self.code.splitlines() if s.strip()), "")


def extract_blocks(text: str) -> list[Block]:
    """The ```python blocks (also ```py, ```python3...) of a Markdown ``text``, with the ``##``/``###`` heading above
    each and whether the line before its fence is ``<!-- no-test -->``. Other fences (```bash, ```yaml, plain ```)
    are passed over."""
    lines = text.splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        stripped = lines[i].strip()
        if re.match(r"^#{2,3} ", lines[i]):  # a #### subsection's blocks belong to its ### section (and its rules)
            section = lines[i].lstrip("#").strip()
        if stripped.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
            if PYTHON_FENCE.match(stripped):
                skip = i > 0 and lines[i - 1].strip() == NO_TEST
                blocks.append(Block(i + 2, "\n".join(lines[i + 1 : end]) + "\n", section, skip))
            i = end + 1
            continue
        i += 1
    return blocks


def run_block(block: Block, cwd: Path, timeout: float = TIME_LIMIT) -> str | None:
    """Run ``block`` in a fresh Python process in ``cwd``; None when it exits 0, else why not, naming the block's
    README line and first line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "RLGEN_CACHE": str(cwd / ".rlgen-cache")}  # fmt: skip
    where = f"README.md line {block.line} ({block.section!r}: {block.first_line.strip()!r})"
    try:
        out = subprocess.run([sys.executable, "-c", block.code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{where} ran past {timeout:g} s"
    if out.returncode != 0:
        return f"{where} failed with exit status {out.returncode}:\n{out.stderr[-3000:]}"
    return None


BLOCKS = extract_blocks(README.read_text())


def test_the_extractor_finds_python_blocks_their_sections_and_markers(tmp_path):
    text = ("## Intro\n```bash\nrlgen --help\n```\n### First\nsome text with ```python inline\n\n```python\nprint(1)\n```\n"
            f"{NO_TEST}\n```python\nimport torch; torch.zeros(1, device='cuda')\n```\n```yaml\na: 1\n```\n")  # fmt: skip
    blocks = extract_blocks(text)
    assert [(b.line, b.section, b.skip, b.code) for b in blocks] == [
        (9, "First", False, "print(1)\n"),
        (13, "First", True, "import torch; torch.zeros(1, device='cuda')\n"),
    ]
    assert run_block(blocks[0], tmp_path) is None


def test_a_broken_block_fails_naming_its_readme_line_and_first_line(tmp_path):
    # A copy of a README block with a typo in a name: the failure says where it is and why.
    good = next(b for b in BLOCKS if b.section == "Use rlgen from Python")
    broken = dataclasses.replace(good, code=good.code.replace("LevelSplit.minigrid(", "LevelSplit.minigird("))
    assert broken.code != good.code
    message = run_block(broken, tmp_path)
    assert message is not None
    assert message.startswith(f"README.md line {good.line} ('Use rlgen from Python': {good.first_line.strip()!r}) failed with exit status 1")
    assert "AttributeError" in message and "minigird" in message
    slow = dataclasses.replace(good, code="import time\ntime.sleep(30)\n")
    assert run_block(slow, tmp_path, timeout=1) == f"README.md line {good.line} ('Use rlgen from Python': 'import time') ran past 1 s"


def test_the_python_sections_have_blocks_and_none_is_skipped():
    for section in RUN_ALWAYS:
        assert any(b.section == section for b in BLOCKS), f"README has no ```python block under {section!r}"
    assert not [b.line for b in BLOCKS if b.section in RUN_ALWAYS and b.skip], f"blocks under {RUN_ALWAYS} must run"
    skipped = [b for b in BLOCKS if b.skip]
    # Each skip is deliberate: a GPU example, an example of an error, and fragments naming data or objects no test has.
    assert len(skipped) == README.read_text().count(f"{NO_TEST}\n```python")
    assert len(BLOCKS) - len(skipped) >= 6, [b.line for b in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}" for b in BLOCKS])
def test_readme_block_runs(block, tmp_path):
    if block.skip:
        pytest.skip(f"README.md line {block.line} is marked {NO_TEST} ({block.section})")
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures", ignore=shutil.ignore_patterns("cache", "cache.lock"))
    failure = run_block(block, tmp_path)
    assert failure is None, failure
