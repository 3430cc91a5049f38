"""Writes never follow a symlink planted in a run or dataset directory (review of issue 13, finding 1): atomic
writes use fresh temporary files (O_CREAT | O_EXCL | O_NOFOLLOW), the run-directory lock is opened with
O_NOFOLLOW, and a kill leaves the old file or the new one."""

import json
import os
import threading
from pathlib import Path

import pytest

from rlgen.agents.run_dir import LOCK, run_dir_lock
from rlgen.atomic_files import write_bytes_atomic, write_json_atomic
from rlgen.cli import main
from rlgen.errors import RlgenError

ROOT = Path(__file__).resolve().parents[1]
COLLECT = ["collect", str(ROOT / "configs/collect/minigrid_doorkey.yaml"), "env=minigrid/empty-5x5", "split.num_levels=10",
           "skill=random", "transitions=300", "num_envs=2", "progress=false", "device=cpu"]  # fmt: skip


def victim(tmp_path: Path, name: str) -> Path:
    v = tmp_path / "victims" / name
    v.parent.mkdir(exist_ok=True)
    v.write_text("precious")
    return v


def test_temporary_names_planted_as_symlinks_are_never_followed(tmp_path):
    target = tmp_path / "d" / "state.json"
    target.parent.mkdir()
    planted = []
    # every name a writer of this rlgen or an earlier one used for its temporary file
    for name in ("state.json.tmp", f".state.json.{os.getpid()}.{threading.get_ident()}.tmp"):
        v = victim(tmp_path, name)
        (target.parent / name).symlink_to(v)
        planted.append(v)
    write_json_atomic(target, {"step": 1})
    assert json.loads(target.read_text()) == {"step": 1} and not target.is_symlink()
    assert [v.read_text() for v in planted] == ["precious", "precious"]


def test_a_symlinked_target_is_replaced_not_followed(tmp_path):
    v = victim(tmp_path, "config")
    link = tmp_path / "config.yaml"
    link.symlink_to(v)
    write_bytes_atomic(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new" and v.read_text() == "precious"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(target, {"x": Unserializable()})
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_leftover_temporaries_are_recognized_and_removed(tmp_path):
    from rlgen.atomic_files import is_temporary_name, remove_temporaries, temporary_name

    (tmp_path / "keep.json").write_text("{}")
    left = temporary_name(tmp_path / "shard_00000_00000.zst")
    left.write_bytes(b"half")
    v = victim(tmp_path, "v")
    linked = temporary_name(tmp_path / "manifest.json")
    linked.symlink_to(v)
    assert is_temporary_name(left.name) and not is_temporary_name("keep.json") and not is_temporary_name(".hidden.tmp")
    assert remove_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json", "victims"] and v.read_text() == "precious"


def test_a_collection_into_a_directory_with_planted_symlinks_writes_only_its_own_files(tmp_path, capsys):
    """The review's repro 3: symlinks at the shard's and the manifest's temporary names."""
    out = tmp_path / "pl"
    (out / "shards").mkdir(parents=True)
    planted = {}
    for rel in ("manifest.json.tmp", "shards/shard_00000_00000.zst.tmp", f"shards/.shard_00000_00000.zst.{os.getpid()}.{threading.get_ident()}.tmp"):
        planted[rel] = victim(tmp_path, rel.replace("/", "_"))
        (out / rel).symlink_to(planted[rel])
    assert main([*COLLECT, f"out_dir={out}"]) == 0
    assert all(v.read_text() == "precious" for v in planted.values())
    assert not (out / "manifest.json").is_symlink() and (out / "shards/shard_00000_00000.zst").is_file()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_planted_lock_file_is_refused_in_one_line_and_its_target_untouched(tmp_path, capsys, kind):
    out = tmp_path / "lk"
    out.mkdir()
    v = victim(tmp_path, "lock-victim")
    if kind == "symlink":
        (out / LOCK).symlink_to(v)
    else:
        os.link(v, out / LOCK)
    with pytest.raises(RlgenError, match="refused"):
        with run_dir_lock(out):
            pass
    assert main([*COLLECT, f"out_dir={out}"]) == 2  # `rlgen collect` takes the same lock
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(out / LOCK) in err
    assert v.read_text() == "precious"
