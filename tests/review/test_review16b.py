"""Review of issue 16 (branch review16b): a new user's path through shipped configs, the README's Python
examples and their test, optional wandb tracking, and the small things, attacked as a user and a reviewer.
Each test is a defect found in the review (each failed on the code before its fix)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlgen.agents import register_algorithm, train_schema
from rlgen.config import JaxOfflineConfig, load_config
from rlgen.errors import ConfigError
from tests.test_readme_examples import BLOCKS, extract_blocks

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "tests" / "fixtures" / "old_runs" / "dataset"


class _MyJaxConfig(JaxOfflineConfig):
    """A user's JAX offline algorithm keeps the JAX schema's keys (``seeds``, ``sync_every``)."""

    algo: str = "review16b_jax"


def test_a_user_offline_algorithm_registered_with_a_jax_offline_schema_validates():
    """``register_algorithm`` accepts any ``OfflineConfig`` subclass and tells its ``algo`` validator the new
    name; ``JaxOfflineConfig`` replaced that validator with one that knew only bc_jax/iql_jax/cql_jax, so the
    registration succeeded and every config of it then failed with "algo ... is not one of: bc_jax, ..."."""
    register_algorithm("review16b_jax", "offline", _MyJaxConfig, train="x:y", load="x:z")
    overrides = ["algo=review16b_jax", f"dataset={DATASET}"]
    cfg = load_config(None, overrides, schema=train_schema(None, overrides))
    assert type(cfg) is _MyJaxConfig and cfg.algo == "review16b_jax"
    # the built-in schema still refuses names registered with no JAX schema, and typos, in one line
    with pytest.raises(ConfigError, match=r"algo 'review16b_jax' is not one of: bc_jax, iql_jax, cql_jax"):
        load_config(None, overrides, schema=JaxOfflineConfig)
    with pytest.raises(ConfigError, match=r"algo 'bc_jaxx' is not one of"):
        load_config(None, ["algo=bc_jaxx", f"dataset={DATASET}"], schema=_MyJaxConfig)


def _claimed_algorithms(text: str) -> tuple[str, ...]:
    """The tuple a ``available_algorithms()  # (...)`` comment says the call returns."""
    match = re.search(r"available_algorithms\(\)\)?\s*#\s*(\(.*?\))", text)
    assert match, "no available_algorithms() example with its output"
    return ast.literal_eval(match.group(1))


@pytest.mark.parametrize("where", ["README.md", "rlgen/agents/__init__.py"])
def test_the_documented_output_of_available_algorithms_is_what_it_returns(where):
    """README "Load a trained agent" and the agents package docstring said it prints the 8 torch/PPO names;
    it returns 11 (bc_jax, iql_jax, cql_jax too). The README test only checks a block's exit status, so a wrong
    printed-output comment never fails it."""
    # in a fresh process: other tests register algorithms of their own in this one
    code = "from rlgen.agents import available_algorithms; print(available_algorithms())"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert _claimed_algorithms((REPO / where).read_text()) == ast.literal_eval(fresh.strip())


@pytest.mark.parametrize("fence", ["```py", "```Python", "``` python", "```python3", "```python title=x.py"])
def test_the_readme_extractor_runs_python_blocks_whatever_their_fence_spelling(fence):
    """A block fenced ```py (or ``` python...) was passed over as "another language": it could be broken and no
    test would run it (the suite only asks for >= 6 runnable blocks of 11)."""
    blocks = extract_blocks(f"## A\n{fence}\nprint(1)\n```\n")
    assert [(b.line, b.section, b.code) for b in blocks] == [(3, "A", "print(1)\n")]


def test_a_subsection_block_of_the_use_rlgen_from_python_sections_may_not_be_skipped():
    """Blocks under a ``####`` heading took that heading as their section, so a ``<!-- no-test -->`` block in a
    subsection of "Use rlgen from Python" escaped the rule that those sections' blocks all run (and the
    extractor's docstring says ##/### headings name the section)."""
    text = "### Use rlgen from Python\n```python\nprint(1)\n```\n#### Details\n<!-- no-test -->\n```python\nprint(2)\n```\n"
    assert [b.section for b in extract_blocks(text)] == ["Use rlgen from Python"] * 2


def test_the_level_splits_example_runs():
    """The README's first Python example (Level splits: make train and held-out Procgen envs, then an overlapping
    split's error) was marked no-test because its last line raises on purpose; everything before it runs in
    seconds, so the first code a user copies was never run by the tests."""
    block = next(b for b in BLOCKS if b.section == "Level splits")
    assert not block.skip, f"README.md line {block.line} is marked no-test"


@pytest.mark.usefixtures("one_torch_thread")
def test_a_wandb_that_is_installed_but_fails_to_import_is_one_line_and_the_retry_trains(tmp_path, monkeypatch, capsys):
    """wandb found but broken at import (e.g. a protobuf it cannot use): ``rlgen train ... logger=[tensorboard,
    wandb]`` ended in a traceback from inside wandb (exit 1) instead of one line saying what to do."""
    from rlgen.cli import main
    from tests.agents.test_trackers import offline_args

    fake = tmp_path / "site" / "wandb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("cannot import name \'builder\' from \'google.protobuf.internal\'")\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m == "wandb" or m.startswith("wandb.")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(offline_args(tmp_path, "logger=[tensorboard,wandb]")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "wandb" in err and "builder" in err and "logger=[tensorboard]" in err, err
    assert main(offline_args(tmp_path)) == 0  # the corrected retry (TensorBoard only) is not blocked


def test_a_new_users_first_offline_run_says_how_to_get_a_dataset(tmp_path, monkeypatch, capsys):
    """`rlgen train offline/bc` in an empty directory: the shipped config's default dataset (a 1M coinrun
    collection) is not there, and the error said only "manifest.json not found", not how to make or name one."""
    from rlgen.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "offline/bc", "steps=30"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no dataset at 'data/coinrun-expert-1M'" in err, err
    assert "rlgen collect" in err and "dataset=" in err and "rlgen configs ls collect" in err, err


@pytest.mark.usefixtures("one_torch_thread")
def test_collect_and_evaluate_say_what_to_run_next(tmp_path, monkeypatch, capsys):
    """A new user's path: `rlgen train` ends with "next: rlgen evaluate ...", but `rlgen collect` ended with
    the dataset's counts only (which command and key train on it?) and `rlgen evaluate` with "wrote to ...",
    not that `rlgen report` turns it into tables (and `rlgen report` alone is an argparse error)."""
    import shutil

    from rlgen.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "tests" / "fixtures" / "old_runs" / "ppo", "runs/ppo", ignore=shutil.ignore_patterns("results.jsonl"))
    assert main(["collect", "collect/minigrid_doorkey", "policy_run=runs/ppo", "transitions=50", "num_envs=2", "device=cpu",
                 "out_dir=data/tiny", "env=minigrid/doorkey-5x5", "split.num_levels=20", "split.options.view=full_rgb",
                 "split.options.tile_size=1"]) == 0, capsys.readouterr().err  # fmt: skip
    out = capsys.readouterr().out
    assert "next: rlgen train offline/bc dataset=data/tiny" in out, out
    assert main(["evaluate", "runs/ppo", "--episodes", "2"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "next: rlgen report runs/ppo" in out, out
