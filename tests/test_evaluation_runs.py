"""`rlgen evaluate` on tiny real offline runs in states a user meets: killed before it finished, a checkpoint
asked for by name, stopped early and trained again, moved away from its dataset and its cwd."""

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from rlgen.cli import main
from tests.test_evaluate_cli import ROOT, offline_dataset

BC = [str(ROOT / "configs/offline/bc.yaml"), "network=minigrid_cnn", "batch_size=16", "device=cpu", "progress=false", "seed=3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def state_of(run: Path) -> dict:
    return json.loads((run / "checkpoints/latest/state.json").read_text())


def kill_at(monkeypatch, step: int) -> None:
    """SIGTERM to this process at gradient step ``step``, as a user's kill or a scheduler's would arrive."""
    from rlgen.agents.offline import D3rlpyAgent

    update, calls = D3rlpyAgent.update, {"n": 0}

    def counting(self, batch):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return update(self, batch)

    monkeypatch.setattr(D3rlpyAgent, "update", counting)


def test_an_unfinished_run_is_evaluated_with_a_warning_and_its_rows_say_so(tmp_path, capsys, monkeypatch):
    # Before: a run killed mid-training was evaluated silently as if final (checkpoint: null, no step), and
    # its rows outlived the run's finished evaluation in the report.
    data = offline_dataset(tmp_path / "toy")
    run = tmp_path / "bc"
    train = ["train", *BC, f"dataset={data}", "eval.enabled=false", "steps=40", "checkpoint_every=10", f"out_dir={run}"]
    kill_at(monkeypatch, 25)
    assert main(train) == 130
    monkeypatch.undo()
    assert state_of(run)["finished"] is False and state_of(run)["step"] == 25  # saved on the signal
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "3"]) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "not finished" in line]
    assert "step 25 of 40" in warning
    assert [(r["finished"], r["step"], r["checkpoint"]) for r in rows_of(run)] == [(False, 25, None)] * 2
    assert main(train) == 0  # resumes and finishes
    assert main(["evaluate", str(run), "--episodes", "3"]) == 0
    assert "not finished" not in capsys.readouterr().err
    assert [(r["finished"], r["step"]) for r in rows_of(run)] == [(True, 40)] * 2  # the finished evaluation replaced the other


def test_an_offline_checkpoint_is_asked_for_by_its_name_and_a_wrong_name_is_refused(tmp_path, capsys):
    # Before: --checkpoint X was ignored for offline runs: the final model was evaluated and the rows said checkpoint X.
    data = offline_dataset(tmp_path / "toy")
    run = tmp_path / "bc"
    assert main(["train", *BC, f"dataset={data}", "eval.enabled=false", "steps=4", f"out_dir={run}"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "2", "--checkpoint", "does-not-exist"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "'does-not-exist'" in err and "--checkpoint latest" in err and "model/" in err
    assert not (run / "results.jsonl").exists()
    assert main(["evaluate", str(run), "--episodes", "2", "--checkpoint", "latest"]) == 0
    assert {(r["checkpoint"], r["step"], r["finished"]) for r in rows_of(run)} == {("latest", 4, True)}


def test_a_run_that_stopped_early_is_finished_and_training_it_again_changes_nothing(tmp_path, capsys):
    # Before: the same command again trained the early-stopped run further (10 -> 15 steps) and its model changed;
    # both runs printed "for 200 gradient steps".
    data = offline_dataset(tmp_path / "toy")
    run = tmp_path / "bc"
    train = ["train", *BC, f"dataset={data}", "steps=200", "eval.every_steps=5", "eval.episodes=2", "eval.early_stopping_patience=1",
             f"out_dir={run}"]  # fmt: skip
    assert main(train) == 0
    first = capsys.readouterr().out
    step, model = state_of(run)["step"], (run / "model/model.d3").read_bytes()
    assert step < 200
    assert main(train) == 0
    again = capsys.readouterr().out
    assert state_of(run)["step"] == step and (run / "model/model.d3").read_bytes() == model
    assert state_of(run)["stopped_early"] is True
    assert f"to gradient step {step}" in first and "stopped early" in first and "200" not in first
    assert again.startswith(f"nothing to do: {run} finished training at gradient step {step}")


def test_an_offline_run_moved_away_from_its_dataset_and_cwd_still_evaluates(tmp_path, capsys, monkeypatch):
    # Before: config.yaml's dataset path is relative to the cwd of training, and loading needed the dataset.
    monkeypatch.chdir(tmp_path)
    offline_dataset(tmp_path / "toy")
    assert main(["train", *BC, "dataset=toy", "eval.enabled=false", "steps=4", "out_dir=runs/bc"]) == 0
    (tmp_path / "elsewhere").mkdir()
    shutil.move("runs/bc", tmp_path / "elsewhere" / "bc")
    shutil.rmtree(tmp_path / "toy")  # shipped without its dataset
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "elsewhere" / "bc"), "--episodes", "2"]) == 0, capsys.readouterr().err
    train, held = rows_of(tmp_path / "elsewhere" / "bc")
    assert max(train["levels"]) < 10 and min(held["levels"]) >= 100  # the dataset's training levels, recorded in the run
    assert (train["dataset"], train["dataset_transitions"]) == ("toy", 80)


def test_rows_record_the_acting_mode_actually_used(tmp_path, capsys):
    # Before: CQL (greedy on its Q-values whatever is asked) was labelled deterministic: false, as if it sampled.
    data = offline_dataset(tmp_path / "toy")
    run = tmp_path / "cql"
    assert main(["train", str(ROOT / "configs/offline/cql.yaml"), *BC[1:], f"dataset={data}", "eval.enabled=false", "steps=2",
                 f"out_dir={run}"]) == 0  # fmt: skip
    assert main(["evaluate", str(run), "--episodes", "2", "--which", "held_out"]) == 0
    (r,) = rows_of(run)
    assert (r["algorithm"], r["deterministic"], r.get("deterministic_requested")) == ("cql", True, False)


def test_evaluations_during_offline_training_use_the_datasets_training_levels(tmp_path, monkeypatch):
    # Before: TensorBoard's eval/train_levels used the split's 50 training levels, not the 10 the data came from.
    import rlgen.agents.offline_train as offline_train

    seen, evaluate = {}, offline_train.evaluate_on_levels

    def spy(agent, split, which, **kwargs):
        seen[which] = split
        return evaluate(agent, split, which, **kwargs)

    monkeypatch.setattr(offline_train, "evaluate_on_levels", spy)
    data = offline_dataset(tmp_path / "toy")
    assert main(["train", *BC, f"dataset={data}", "steps=2", "eval.every_steps=2", "eval.episodes=2", f"out_dir={tmp_path / 'bc'}"]) == 0
    assert str(seen["train"].train) == "0-9" and str(seen["validation"].validation) == "50-99"


def test_runs_differing_only_in_seed_share_a_config_digest_and_other_settings_do_not(tmp_path, capsys):
    # Before: rows had no config digest: BC 60 steps and 600 steps at lr 0.003 became "bc 2 runs".
    data = offline_dataset(tmp_path / "toy")
    digests = {}
    for name, extra in (("s0", ["seed=0"]), ("s1", ["seed=1", "device=auto", "checkpoint_every=1"]), ("lr", ["seed=0", "learning_rate=0.003"])):
        run = tmp_path / name
        assert main(["train", *BC, f"dataset={data}", "eval.enabled=false", "steps=2", *extra, f"out_dir={run}", f"name={name}"]) == 0
        assert main(["evaluate", str(run), "--episodes", "1", "--which", "held_out"]) == 0
        (r,) = rows_of(run)
        digests[name] = (r["config_digest"], r["split_digest"], r["settings"])
    assert digests["s0"][:2] == digests["s1"][:2] and digests["s0"][0] != digests["lr"][0]
    assert digests["lr"][2]["learning_rate"] == 0.003 and "seed" not in digests["s0"][2]
