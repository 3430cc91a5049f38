"""`rlgen datasets ls` (issue 16, item 10): columns stay aligned whatever the length of names and env ids."""

import re

from rlgen.cli import main
from rlgen.data import write_dataset
from tests.data.conftest import manifest


def test_columns_line_up_with_a_long_env_id_and_dataset_name(tmp_path, episodes, capsys):
    write_dataset(tmp_path / "all" / "toy", episodes, manifest(), shard_transitions=100)
    long_name = "doorkey-16x16-expert-1M-transitions-seed-0"  # longer than the old 36-character column
    write_dataset(tmp_path / "all" / long_name, episodes[:7], manifest(env="minigrid/MiniGrid-DoorKey-16x16-v0"), shard_transitions=100)
    assert main(["datasets", "ls", str(tmp_path / "all")]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [long_name, "toy"]
    spans = [m.span() for m in re.finditer(r"\S+", header)]
    for line in lines:
        cells = [m.span() for m in re.finditer(r"\S+", line)]
        assert [c[0] for c in cells[:3]] == [h[0] for h in spans[:3]], line  # name, env, skill: left-aligned, start together
        assert [c[1] for c in cells[3:]] == [h[1] for h in spans[3:]], line  # the numbers: right-aligned, end under their header
