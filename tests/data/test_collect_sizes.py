"""`rlgen collect` holds the transitions asked for, whatever the episode lengths (issue 13, item 1)."""

from pathlib import Path

import pytest

from rlgen.cli import main
from rlgen.config import CollectConfig, load_config
from rlgen.data import load_dataset
from rlgen.collect import collect

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/collect/minigrid_doorkey.yaml"
# DoorKey-6x6 cut at 8 steps: random actions never open the door that fast, so every episode is
# truncated at step 8 and all envs finish on the same step, again and again.
SYNCHRONIZED = ["skill=random", "split.num_levels=20", "split.options.max_steps=8", "progress=false", "device=cpu"]


@pytest.mark.parametrize(("transitions", "num_envs", "segment"), [(100, 4, None), (95, 3, None), (100, 4, 10)])
def test_all_envs_hitting_the_time_limit_together_still_fill_the_dataset(tmp_path, transitions, num_envs, segment):
    extra = [f"segment_transitions={segment}"] if segment else []
    cfg = load_config(CONFIG, [*SYNCHRONIZED, f"transitions={transitions}", f"num_envs={num_envs}", *extra, f"out_dir={tmp_path / 'd'}"],
                      schema=CollectConfig)  # fmt: skip
    ds = load_dataset(collect(cfg))
    assert (ds.episodes["length"] == 8).all()  # the premise: every episode hit the limit
    # at least N, and at most N plus one episode per env, across segments too
    assert transitions <= ds.num_transitions <= transitions + num_envs * 8
    assert ds.verify() == []


def test_the_cli_collects_what_was_asked_on_doorkey(tmp_path, capsys):
    """One of the issue's commands (it gave 2,880 transitions): DoorKey-6x6 episodes end at the 360-step limit together."""
    out = tmp_path / "d"
    assert main(["collect", str(CONFIG), "skill=random", "transitions=12345", "num_envs=8", "progress=false", "device=cpu", f"out_dir={out}"]) == 0
    ds = load_dataset(out)
    assert 12345 <= ds.num_transitions <= 12345 + 8 * 360
    assert f"{ds.num_transitions:,} transitions" in capsys.readouterr().out


def test_xland_collection_fills_the_dataset_when_all_envs_truncate_together(tmp_path):
    pytest.importorskip("xminigrid")  # the `jax` extra
    from rlgen.collect.jax_rollout import collect_jax as collect_xland

    cfg = load_config(ROOT / "configs/collect/xland_trivial.yaml", [
        "skill=random", "split.num_levels=100", "split.options.num_rulesets=200", "split.options.max_steps=4", "transitions=100",
        "num_envs=4", "progress=false", "device=cpu", f"out_dir={tmp_path / 'x'}"], schema=CollectConfig)  # fmt: skip
    ds = load_dataset(collect_xland(cfg))
    assert ds.episodes["length"].max() <= 4
    assert 100 <= ds.num_transitions <= 100 + 4 * 4
