"""Offline run directories: resume is bit-identical, checkpoints survive a kill at the worst moment,
loading reads weights only, damaged files and bad sizes give one-line errors naming the file."""

import json
import os
import pathlib
import shutil
from pathlib import Path

import pytest
import torch

from rlgen.agents import load_agent as load_offline_agent
from rlgen.agents.offline_train import train_offline
from rlgen.cli import main
from rlgen.agents.run_dir import write_resolved_config
from rlgen.config import OfflineConfig, load_config
from rlgen.errors import ConfigError, RlgenError
from tests.agents.test_offline import bandit_dataset

ROOT = Path(__file__).resolve().parents[2]
ALGOS = ["bc", "bcq", "cql", "iql", "dt", "bct"]
MODEL_FILE = {"bc": "model.d3", "bcq": "model.d3", "cql": "model.d3", "iql": "model.pt", "dt": "model.pt", "bct": "model.pt"}


def run_config(data: Path, out: Path, algo: str, *extra: str) -> OfflineConfig:
    # Target copies every 4 updates: a resume at step 6 that lost the update counter would copy at the wrong steps.
    return load_config(ROOT / f"configs/offline/{algo}.yaml", [
        f"dataset={data}", "network=minigrid_cnn", "batch_size=16", "device=cpu", "progress=false", "eval.enabled=false",
        "n_layers=1", "n_heads=2", "embed_dim=16", "context_length=2", "target_update_interval=4", "checkpoint_every=3",
        f"out_dir={out}", *extra,
    ], schema=OfflineConfig)  # fmt: skip


def flat_tensors(obj, prefix: str = "") -> dict:
    """Every tensor (and plain value) in a nested state dict, by path."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flat_tensors(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(flat_tensors(v, f"{prefix}/{i}"))
        return out
    return {prefix: obj}


def assert_same_model(a: Path, b: Path) -> int:
    """Every tensor of two model files bitwise equal (weights, targets, optimizer moments); returns how many."""
    ta, tb = (flat_tensors(torch.load(p, weights_only=True)) for p in (a, b))
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if (torch.is_tensor(ta[k]) and not torch.equal(ta[k], tb[k])) or (not torch.is_tensor(ta[k]) and ta[k] != tb[k])]
    assert not differ, f"{len(differ)} of {len(ta)} entries differ, e.g. {differ[:3]}"
    return sum(torch.is_tensor(v) for v in ta.values())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return bandit_dataset(tmp_path_factory.mktemp("data") / "d", 60, p_correct=0.5)


@pytest.mark.parametrize("algo", ALGOS)
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, data, algo):
    straight = train_offline(run_config(data, tmp_path / "straight", algo, "steps=12"))
    train_offline(run_config(data, tmp_path / "resumed", algo, "steps=6"))
    resumed = train_offline(run_config(data, tmp_path / "resumed", algo, "steps=12"))  # 6 more from the step-6 checkpoint
    assert json.loads((resumed / "checkpoints/latest/state.json").read_text())["step"] == 12
    n = assert_same_model(straight / "model" / MODEL_FILE[algo], resumed / "model" / MODEL_FILE[algo])
    assert n > 10


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


@pytest.mark.parametrize("algo", ["cql", "bct"])
def test_a_kill_between_model_and_state_files_cannot_desynchronize_them(tmp_path, data, algo, monkeypatch):
    # Kill the run while the step-6 checkpoint's state.json is being written (its model file is
    # already saved): the step-3 checkpoint must stay whole, and resuming from it must end exactly
    # where an uninterrupted run ends. (Before: model.d3 of step 6 beside state.json of step 3.) 30 steps:
    # checkpoints are at most a tenth of a run apart, so checkpoint_every=3 holds.
    straight = train_offline(run_config(data, tmp_path / "straight", algo, "steps=30"))
    real_write_text = pathlib.Path.write_text
    calls = {"n": 0}

    def write_text(self, text, *args, **kwargs):
        if self.name.startswith("state.json"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Killed()
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    with pytest.raises(Killed):
        train_offline(run_config(data, tmp_path / "killed", algo, "steps=30"))
    monkeypatch.setattr(pathlib.Path, "write_text", real_write_text)
    assert json.loads((tmp_path / "killed/checkpoints/latest/state.json").read_text())["step"] == 3
    resumed = train_offline(run_config(data, tmp_path / "killed", algo, "steps=30"))
    assert_same_model(straight / "model" / MODEL_FILE[algo], resumed / "model" / MODEL_FILE[algo])


def test_a_kill_mid_swap_resumes_from_the_previous_checkpoint(tmp_path, data):
    straight = train_offline(run_config(data, tmp_path / "straight", "cql", "steps=9"))
    run = train_offline(run_config(data, tmp_path / "run", "cql", "steps=6"))
    ckpt = run / "checkpoints/latest"
    os.rename(ckpt, ckpt.with_name("latest.old"))  # killed after moving the old unit aside ...
    (ckpt.with_name("latest.new")).mkdir()  # ... with the new one half written
    (ckpt.with_name("latest.new") / "model.d3").write_bytes(b"half")
    resumed = train_offline(run_config(data, tmp_path / "run", "cql", "steps=9"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest"]
    assert_same_model(straight / "model/model.d3", resumed / "model/model.d3")


def test_a_kill_after_the_last_checkpoint_still_gets_its_final_model(tmp_path, data):
    run = train_offline(run_config(data, tmp_path / "run", "iql", "steps=3"))
    final = (run / "model/model.pt").read_bytes()
    shutil.rmtree(run / "model")  # killed after the finished checkpoint, before model/ was written
    assert train_offline(run_config(data, tmp_path / "run", "iql", "steps=3")) == run
    assert (run / "model/model.pt").read_bytes() == final


class Payload:
    """Unpickling this writes a file: what a planted model file would do to whoever loads it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("algo", ["bc", "iql", "dt"])
def test_a_planted_model_file_is_refused_without_running_its_code(tmp_path, data, algo, capsys, monkeypatch):
    run = train_offline(run_config(data, tmp_path / "run", algo, "steps=2"))
    # torch.load without an explicit weights_only (as d3rlpy's load_model calls it) unpickles anything
    # when this is set; an explicit weights_only=True is not overridden by it.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    model = run / "model" / MODEL_FILE[algo]
    torch.save({"weights": Payload(marker)}, model)
    with pytest.raises(RlgenError) as e:
        load_offline_agent(run, device="cpu")
    assert not marker.exists()
    assert str(model) in str(e.value) and "\n" not in str(e.value) and "could run code" in str(e.value)
    assert main(["evaluate", str(run), "--episodes", "1"]) == 2  # the CLI: one line, no traceback
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlgen: error:") and len(err.splitlines()) == 1 and str(model) in err
    assert not marker.exists()


@pytest.mark.parametrize("algo", ["cql", "bct"])
def test_damaged_model_and_state_files_give_one_line_errors_naming_them(tmp_path, data, algo):
    run = train_offline(run_config(data, tmp_path / "run", algo, "steps=3"))
    model = run / "model" / MODEL_FILE[algo]
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated
    with pytest.raises(RlgenError) as e:
        load_offline_agent(run, device="cpu")
    assert str(model) in str(e.value) and "\n" not in str(e.value)
    state = run / "checkpoints/latest/state.json"
    state.write_text(state.read_text()[:40])  # torn
    with pytest.raises(RlgenError) as e:
        train_offline(run_config(data, run, algo, "steps=6"))
    assert str(state) in str(e.value) and "\n" not in str(e.value)
    (run / "config.yaml").write_text("algo: [bc\n")  # torn config
    with pytest.raises(RlgenError) as e:
        load_offline_agent(run, device="cpu")
    assert str(run / "config.yaml") in str(e.value) and "\n" not in str(e.value)


def test_an_old_d3rlpy_decision_transformer_run_asks_to_be_retrained(tmp_path, data):
    # DT runs trained before rlgen had its own DT hold d3rlpy's model.d3, whose acting timesteps were
    # off by one from training: refuse them with the reason instead of evaluating them wrongly.
    run = tmp_path / "old-dt"
    cfg = run_config(data, run, "dt", "steps=2")
    write_resolved_config(cfg, run, extra={"dt_target_return": 5.0})
    import d3rlpy

    from rlgen.agents.offline import RlgenEncoderFactory, _register_factory

    _register_factory()
    old = d3rlpy.algos.DiscreteDecisionTransformerConfig(encoder_factory=RlgenEncoderFactory("minigrid_cnn", features_dim=16), context_size=2,
                                                         num_heads=2, num_layers=1, max_timestep=101).create(device="cpu")  # fmt: skip
    old.create_impl((3, 7, 7), 3)
    (run / "model").mkdir()
    old.save_model(str(run / "model/model.d3"))  # what rlgen's former DT wrote
    with pytest.raises(RlgenError, match="older rlgen with d3rlpy's DT.*retrain it") as e:
        load_offline_agent(run, device="cpu")
    assert str(run / "model/model.d3") in str(e.value) and "\n" not in str(e.value)


def test_batch_size_larger_than_the_dataset_is_refused_before_anything_is_written(tmp_path, data):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"batch_size=1,000 is larger than the dataset .* \(60 transitions\); use batch_size <= 60"):
        train_offline(run_config(data, out, "bc", "steps=2", "batch_size=1000"))  # within the config bound (65,536)
    assert not out.exists()
    assert train_offline(run_config(data, out, "bc", "steps=2", "batch_size=60")) == out  # the corrected retry runs
    shutil.rmtree(out)
