"""Small things of issue 16, item 10: what `rlgen train` says about an online run, and the quickstart's time in
`rlgen --help` against the README's measurement."""

import math
import re
from pathlib import Path

from rlgen.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PPO_TINY = ["env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1",
            "ladder.every_steps=1000", "ladder.episodes=2", "eval_num_envs=2", "progress=false", "device=cpu"]  # fmt: skip


def test_ppo_says_the_env_steps_it_ran_and_nothing_to_do_when_finished(tmp_path, capsys):
    args = ["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *PPO_TINY, f"out_dir={tmp_path / 'ppo'}", "total_steps=200"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "to env step 256" in out and "200 env steps" not in out  # whole rollouts of 4 envs x 32 steps: 256 steps ran
    assert main(args) == 0
    assert capsys.readouterr().out.startswith(f"nothing to do: {tmp_path / 'ppo'} finished training at env step 256")


def test_the_quickstart_help_quotes_the_readme_measurement():
    readme = (ROOT / "README.md").read_text()
    minutes, seconds = map(int, re.search(r"Measured here: (\d+) min (\d+) s", readme).groups())
    text = build_parser().format_help()
    quoted = int(re.search(r"quickstart\s+the whole study[^(]*\(about (\d+) minutes", text).group(1))
    assert quoted == math.ceil(minutes + seconds / 60)
