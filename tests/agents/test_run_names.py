"""Default run names never collide: an offline run is named by its algorithm, dataset and seed, so a second
dataset or seed gets its own directory; where two runs do meet, the refusal says which key to change."""

import json
import shutil
from pathlib import Path

from rlgen.agents.run_dir import write_resolved_config
from rlgen.cli import main
from rlgen.config import OfflineConfig, PPOConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "tests" / "fixtures" / "old_runs" / "dataset"


def test_offline_runs_default_to_a_directory_per_algorithm_dataset_and_seed():
    a = load_config(ROOT / "configs/offline/cql.yaml", ["dataset=data/coinrun-expert-1M"], schema=OfflineConfig)
    b = load_config(ROOT / "configs/offline/cql.yaml", ["dataset=data/coinrun-mixed-1M"], schema=OfflineConfig)
    c = load_config(ROOT / "configs/offline/cql.yaml", ["dataset=data/coinrun-mixed-1M", "seed=1"], schema=OfflineConfig)
    assert [x.out_dir for x in (a, b, c)] == ["runs/cql-coinrun-expert-1M-s0", "runs/cql-coinrun-mixed-1M-s0", "runs/cql-coinrun-mixed-1M-s1"]
    assert a.name == "cql-coinrun-expert-1M-s0"
    named = load_config(ROOT / "configs/offline/cql.yaml", ["dataset=data/x", "name=mine"], schema=OfflineConfig)
    assert named.out_dir == "runs/mine"  # an explicit name (or out_dir) still decides


def test_a_second_dataset_with_the_same_command_trains_beside_the_first(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("doorkey-a", "doorkey-b"):
        shutil.copytree(DATASET, tmp_path / "data" / name)
    common = ["steps=2", "batch_size=8", "network=minigrid_cnn", "eval.enabled=false", "progress=false", "device=cpu", "checkpoint_every=2"]
    assert main(["train", "configs/offline/bc.yaml", "dataset=data/doorkey-a", *common]) == 0
    assert main(["train", "configs/offline/bc.yaml", "dataset=data/doorkey-b", *common]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["bc-doorkey-a-s0", "bc-doorkey-b-s0"]
    for run in (tmp_path / "runs").iterdir():
        assert (run / "model" / "model.d3").is_file()


def test_the_refusal_names_the_differing_keys_and_the_key_that_keeps_both_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = load_config(ROOT / "configs/ppo/minigrid_doorkey.yaml", schema=PPOConfig)
    write_resolved_config(first, tmp_path / "runs" / "ppo-doorkey")
    (tmp_path / "runs/ppo-doorkey/checkpoints").mkdir()
    (tmp_path / "runs/ppo-doorkey/checkpoints/latest.pt").write_bytes(b"")  # a resumable run is there
    (tmp_path / "runs/ppo-doorkey/checkpoints/state.json").write_text(json.dumps({"num_timesteps": 10, "finished": False}))
    assert main(["train", "configs/ppo/minigrid_doorkey.yaml", "seed=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("rlgen: error: runs/ppo-doorkey holds a run with a different config (keys differ: seed); seed is 0 there and 1 here. "
                   "To keep both runs give this one its own out_dir (e.g. out_dir=runs/ppo-doorkey-s1) or name; to start over, "
                   "delete runs/ppo-doorkey")  # fmt: skip
