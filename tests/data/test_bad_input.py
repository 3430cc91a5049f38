"""Bad dataset input is one line naming the file or key, never a traceback from numpy or h5py (issue 13's
bad-input list, data family), and no path from a manifest reaches outside its dataset (issue 13, item 6)."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlgen.cli import main
from rlgen.data import DatasetError, load_dataset
from rlgen.data.format import with_digest


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def rewrite_manifest(root: Path, change, digest: bool = True) -> None:
    """Edit the manifest as a tool would (its content_sha256 recomputed) or by hand (digest=False)."""
    m = json.loads((root / "manifest.json").read_text())
    m = change(m)
    if digest and isinstance(m, dict):
        m = with_digest(m)
    (root / "manifest.json").write_text(json.dumps(m))


def drop(key):
    def change(m):
        m.pop(key)
        return m

    return change


def put(key, value):
    def change(m):
        m[key] = value
        return m

    return change


@pytest.mark.parametrize(("change", "digest", "message"), [
    (lambda m: [], False, "manifest must be a JSON object, got \\[\\]"),
    (lambda m: None, False, "manifest must be a JSON object, got None"),
    (drop("observation_space"), True, "key 'observation_space' is missing"),
    (put("shards", "x"), True, "shards must be a non-empty list .* got 'x'"),
    (put("action_space", {"n": "4"}), True, "action_space.n must be an int in 1..65,536 .*got '4'"),
    (put("observation_space", {"shape": [3, -5, 5], "dtype": "uint8"}), True, "observation_space.shape must be a list of positive ints"),
    # issue 13 review, finding 11: spaces that would make training allocate without limit (valid digest)
    (put("observation_space", {"shape": [10**6] * 3, "dtype": "uint8"}), True, "observation_space.shape must be at most 8 dimensions "
     "of at most 67,108,864 values"),
    (put("action_space", {"n": 10**12}), True, "action_space.n must be an int in 1..65,536 .*got 1000000000000"),
    (put("name", "edited by hand"), False, "content differs from its content_sha256"),
])  # fmt: skip
@pytest.mark.parametrize("command", ["verify", "info", "train"])
def test_malformed_manifests_are_one_line_errors(dataset_dir, tmp_path, capsys, change, digest, message, command):
    rewrite_manifest(dataset_dir, change, digest)
    if command == "train":
        args = ["train", str(Path(__file__).resolve().parents[2] / "configs/offline/bc.yaml"), f"dataset={dataset_dir}",
                "steps=1", "eval.enabled=false", "device=cpu", "progress=false", f"out_dir={tmp_path / 'r'}"]  # fmt: skip
    else:
        args = ["datasets", command, str(dataset_dir)]
    assert main(args) in (1, 2)
    out = capsys.readouterr()
    text = out.err if out.err else out.out
    assert "Traceback" not in text and "manifest.json" in text
    assert re.search(message, text), text


def test_a_truncated_cache_array_and_a_torn_episode_table(dataset_dir, capsys):
    ds = load_dataset(dataset_dir)
    ds.cache()
    obs = dataset_dir / "cache" / "obs.npy"
    obs.write_bytes(obs.read_bytes()[:200])  # np.load's mmap used to raise "mmap length is greater than file size"
    assert load_dataset(dataset_dir).sample_transitions(8)["obs"].shape == (8, 3, 5, 5)  # rebuilt
    table = dataset_dir / "episodes.jsonl"
    table.write_text(table.read_text()[:-30])
    assert main(["datasets", "info", str(dataset_dir)]) == 2
    assert "episodes.jsonl" in one_line(capsys)


def test_episode_rows_must_name_shards_of_the_manifest(dataset_dir):
    rows = [json.loads(line) for line in (dataset_dir / "episodes.jsonl").read_text().splitlines()]
    rows[3]["shard"] = "shards/shard_00099_00000.zst"
    (dataset_dir / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rewrite_manifest(dataset_dir, put("episodes_sha256", hashlib.sha256((dataset_dir / "episodes.jsonl").read_bytes()).hexdigest()))
    with pytest.raises(DatasetError, match="shard_00099_00000.zst.* does not list"):
        load_dataset(dataset_dir)


def test_paths_that_are_files(dataset_dir, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["datasets", "info", str(f)]) == 2
    assert "is a file" in one_line(capsys)
    with pytest.raises(DatasetError, match="is a file"):
        load_dataset(dataset_dir).save_subset(f)
    assert f.read_text() == "x"


# --- manifests cannot point outside the dataset ------------------------------------------------------


def test_a_shard_path_outside_the_dataset_is_refused(dataset_dir, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    first = json.loads((dataset_dir / "manifest.json").read_text())["shards"][0]["file"]
    shutil.move(dataset_dir / first, outside / "x.zst")  # a real shard, so reading it would "work"

    def point_out(m):
        m["shards"][0]["file"] = "../../outside/x.zst"
        return m

    rewrite_manifest(dataset_dir, point_out)
    rows = (dataset_dir / "episodes.jsonl").read_text().replace(first, "../../outside/x.zst")
    (dataset_dir / "episodes.jsonl").write_text(rows)
    rewrite_manifest(dataset_dir, put("episodes_sha256", hashlib.sha256(rows.encode()).hexdigest()))
    for args in (["datasets", "verify", str(dataset_dir)], ["datasets", "info", str(dataset_dir)]):
        assert main(args) in (1, 2)
        text = "".join(capsys.readouterr())
        assert "../../outside/x.zst" in text and "resolves outside" in text
    with pytest.raises(DatasetError, match="resolves outside"):
        load_dataset(dataset_dir).sample_transitions(4)


def test_a_symlinked_shard_leaving_the_dataset_is_refused(dataset_dir, tmp_path):
    first = dataset_dir / json.loads((dataset_dir / "manifest.json").read_text())["shards"][0]["file"]
    target = tmp_path / "elsewhere.zst"
    shutil.move(first, target)
    os.symlink(target, first)
    with pytest.raises(DatasetError, match="resolves outside"):
        load_dataset(dataset_dir)


def test_a_subset_never_deletes_anything_in_its_parent(dataset_dir, tmp_path):
    """A subset's parent is a full dataset; reading the subset only (re)builds the parent's own cache,
    under the parent's lock, and deletes nothing rlgen did not write (the old cache rebuild did
    `shutil.rmtree(<parent>/cache)` whatever it held)."""
    sub = load_dataset(dataset_dir).subset(levels=[1, 2]).save_subset(tmp_path / "sub")
    precious = dataset_dir / "cache" / "precious.txt"
    precious.parent.mkdir()
    precious.write_text("not rlgen's")
    (dataset_dir / "cache" / "meta.json").write_text("{}")  # looks like a stale cache
    with pytest.raises(DatasetError, match="precious.txt.*not deleting it"):
        load_dataset(sub).sample_transitions(4)
    assert precious.read_text() == "not rlgen's"


def test_a_subset_parent_must_be_a_full_dataset(dataset_dir, tmp_path):
    sub = load_dataset(dataset_dir).subset(levels=[1, 2]).save_subset(tmp_path / "sub")
    victim = tmp_path / "victim"
    (victim / "cache").mkdir(parents=True)
    (victim / "cache" / "keep.npy").write_bytes(b"x")
    rewrite_manifest(sub, put("parent", "../victim"))
    with pytest.raises(DatasetError, match="cannot be read"):
        load_dataset(sub).sample_transitions(4)
    # a subset of a subset names its parent subset: refused
    inner = tmp_path / "inner"
    rewrite_manifest(tmp_path / "sub", put("parent", os.path.relpath(dataset_dir, tmp_path / "sub")))
    load_dataset(tmp_path / "sub").subset(levels=[1]).save_subset(inner)
    rewrite_manifest(inner, put("parent", "../sub"))
    with pytest.raises(DatasetError, match="itself a subset"):
        load_dataset(inner)
    assert sorted(p.name for p in victim.rglob("*")) == ["cache", "keep.npy"]  # no lock, nothing deleted


def test_minari_import_of_a_damaged_file_is_one_line(dataset_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert main(["datasets", "export", str(dataset_dir), "--minari", "rlgen/toy/expert-v0"]) == 0
    capsys.readouterr()
    [h5] = list((tmp_path / "minari").rglob("main_data.hdf5"))
    good = h5.read_bytes()
    for damaged in (good[: len(good) // 2], b"XXXXXXXX" + good[8:]):  # truncated; bad signature
        h5.write_bytes(damaged)
        assert main(["datasets", "import", "rlgen/toy/expert-v0", str(tmp_path / "back")]) == 2
        err = one_line(capsys)
        assert "rlgen/toy/expert-v0" in err and "truncated or corrupt" in err
        assert not (tmp_path / "back" / "manifest.json").exists()
    h5.write_bytes(good)
    assert main(["datasets", "import", "rlgen/toy/expert-v0", str(tmp_path / "back")]) == 0  # the retry is not blocked
    np.testing.assert_array_equal(load_dataset(tmp_path / "back").episodes["length"], load_dataset(dataset_dir).episodes["length"])


def test_episode_ids_must_be_0_to_n_minus_1(tmp_path):
    """A schema 1 dataset has no checksum over episodes.jsonl: an id of 10**12 used to size an array of 8 TB."""
    root = shutil.copytree(Path(__file__).parent / "fixtures" / "schema1-toy", tmp_path / "old")
    rows = [json.loads(line) for line in (root / "episodes.jsonl").read_text().splitlines()]
    rows[2]["id"] = 10**12
    (root / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match="episode ids must be 0..7"):
        load_dataset(root)
