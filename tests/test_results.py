"""Run ids, dataset identities and results.jsonl rows: written once, replaced atomically, read tolerantly."""

import json
import threading

import numpy as np
import pytest

from rlgen.agents.run_dir import RUN_FILE, ensure_run_id, path_run_id, read_run_id, write_resolved_config
from rlgen.config import RlgenConfig, load_config
from rlgen.data import Episode, dataset_identity, load_dataset, write_dataset
from rlgen.envs import LevelSplit
from rlgen.errors import RlgenError
from rlgen.evaluation import RandomPolicy, evaluate_on_levels
from rlgen.evaluation.results import read_results, record_results
from rlgen.report import keep_latest, load_results


def test_run_id_is_written_once_and_kept_across_resumes(tmp_path):
    cfg = load_config(None, ["env=minigrid/empty-5x5"], schema=RlgenConfig)
    write_resolved_config(cfg, tmp_path / "run")
    record = (tmp_path / "run" / RUN_FILE).read_text()
    run_id = json.loads(record)["run_id"]
    assert len(run_id) == 32 and read_run_id(tmp_path / "run") == run_id
    write_resolved_config(cfg, tmp_path / "run", extra={"resumed": True})  # every trainer calls it again on resume
    assert (tmp_path / "run" / RUN_FILE).read_text() == record
    write_resolved_config(cfg, tmp_path / "other")
    assert read_run_id(tmp_path / "other") != run_id


def test_concurrent_first_writers_agree_on_one_id(tmp_path):
    barrier = threading.Barrier(8)
    ids = []

    def first_write():
        barrier.wait()  # all at once, as PPO, collection and a pipeline retry might
        ids.append(ensure_run_id(tmp_path / "run"))

    threads = [threading.Thread(target=first_write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 8 and set(ids) == {read_run_id(tmp_path / "run")} and not list((tmp_path / "run").glob("*.tmp"))


def test_old_run_directories_get_an_id_from_their_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "runs" / "p").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert read_run_id("runs/p") == read_run_id(tmp_path / "runs" / "p") == read_run_id("runs/../runs/p") == path_run_id("runs/p")
    assert read_run_id("runs/p") != read_run_id(tmp_path)
    (tmp_path / "runs" / "p" / RUN_FILE).write_text("{torn")
    with pytest.raises(RlgenError, match=r"run.json is not a readable run record"):
        read_run_id("runs/p")


def toy_dataset(path, config=None):
    rng = np.random.default_rng(0)
    eps = [Episode(rng.integers(0, 255, (t + 1, 3, 5, 5), dtype=np.uint8), rng.integers(0, 3, t), np.zeros(t, np.float32), np.eye(t, dtype=bool)[-1],
                   np.zeros(t, bool), level=i % 7) for i, t in enumerate(rng.integers(3, 9, 40))]  # fmt: skip
    split = LevelSplit.minigrid("empty-5x5", num_levels=50)
    manifest = {"env": split.id, "skill": "expert", "split": split.to_dict(), "observation_space": {"shape": [3, 5, 5], "dtype": "uint8"},
                "action_space": {"n": 3}, "policies": [{"label": "expert"}], **({"config": config} if config else {})}  # fmt: skip
    return write_dataset(path, eps, manifest)


def test_dataset_identity_is_the_nominal_recipe(tmp_path):
    ds = load_dataset(toy_dataset(tmp_path / "d", config={"levels": 10, "transitions": 200}))
    facts = dataset_identity(ds)
    assert facts == {"name": "d", "skill": "expert", "levels": 10, "size": 200, "transitions": ds.num_transitions, "distinct_levels": 7,
                     "train_levels": "0-9"}  # fmt: skip
    sub = load_dataset(ds.subset(transitions=100, seed=0).save_subset(tmp_path / "sub"))
    assert dataset_identity(sub)["size"] == 100 and dataset_identity(sub)["levels"] == 10
    by_levels = load_dataset(ds.subset(levels=3, seed=0).save_subset(tmp_path / "three"))
    assert dataset_identity(by_levels)["levels"] == 3 and len(by_levels.levels) == 3
    imported = dataset_identity(load_dataset(toy_dataset(tmp_path / "imported")))  # no collection config: what was measured
    assert imported["levels"] == 50 and imported["size"] == imported["transitions"]


def eval_row(which="held_out", run_id="r1", t=1.0, **extra):
    split = LevelSplit.minigrid("empty-5x5", num_levels=10)
    r = evaluate_on_levels(RandomPolicy(3), split, which, episodes=2)
    return {**r.to_row(run_id=run_id, algorithm="bc"), "time": t, **extra}


def test_record_results_replaces_the_same_evaluation(tmp_path):
    path = tmp_path / "results.jsonl"
    record_results(path, [eval_row("train"), eval_row("held_out")])
    _, replaced, warnings = record_results(path, [eval_row("held_out", t=2.0)])
    assert replaced == 1 and warnings == []
    rows = read_results(path)
    assert [(r["which"], r["time"]) for r in rows] == [("train", 1.0), ("held_out", 2.0)]
    # another checkpoint, greedy actions or another run are other evaluations: kept
    record_results(path, [eval_row("held_out", checkpoint="rung_1"), eval_row("held_out", deterministic=True, deterministic_requested=True),
                         eval_row("held_out", run_id="r2")])
    assert len(read_results(path)) == 5 and not list(tmp_path.glob("*.tmp"))


def test_read_results_skips_bad_lines_with_a_warning(tmp_path):
    good = eval_row()
    bad = [{k: v for k, v in good.items() if k != "which"}, {**good, "which": "test"}, {**good, "returns": []}, {**good, "returns": ["x"]},
           {**good, "normalized": [0.5]}, [1, 2]]  # fmt: skip
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + "".join(json.dumps(b) + "\n" for b in bad) + '{"env": "minigrid/x", "wh\n')
    warnings: list[str] = []
    assert read_results(path, warnings) == [good]
    assert warnings == [
        f"{path}:3: skipped: missing key 'which'", f"{path}:4: skipped: which='test' is not one of train, validation, held_out",
        f"{path}:5: skipped: 'returns' is not a non-empty list of finite numbers", f"{path}:6: skipped: 'returns' is not a non-empty list of finite numbers",
        f"{path}:7: skipped: 'normalized' has 1 entries but 'returns' 2", f"{path}:8: skipped: not a JSON object (list)",
        f"{path}:9: skipped: not a JSON row (Unterminated string starting at)",
    ]  # fmt: skip
    with pytest.raises(RlgenError, match="no results file"):
        read_results(tmp_path / "missing.jsonl")


def test_latest_row_wins_across_files(tmp_path):
    a, b = tmp_path / "a" / "results.jsonl", tmp_path / "b" / "results.jsonl"
    record_results(a, [eval_row("held_out", t=5.0), eval_row("train", t=5.0)])
    record_results(b, [eval_row("held_out", t=7.0)])  # the same run evaluated again elsewhere (by the pipeline, say)
    res = load_results([a, b])
    assert res.dropped == 1 and sorted((r["which"], r["time"]) for r in res.rows) == [("held_out", 7.0), ("train", 5.0)]
    # rows from before run ids, appended to a run directory's results.jsonl, belong to that run
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("algo: bc\n")
    legacy = {k: v for k, v in eval_row().items() if k not in ("run_id", "time")}
    (tmp_path / "run" / "results.jsonl").write_text(json.dumps(legacy) + "\n" + json.dumps({**legacy, "returns": [1.0, 1.0]}) + "\n")
    res = load_results([tmp_path / "run" / "results.jsonl"])
    assert res.dropped == 1 and res.rows[0]["returns"] == [1.0, 1.0] and res.rows[0]["run_id"] == read_run_id(tmp_path / "run")
    kept, dropped = keep_latest([(legacy, None), ({**legacy, "algorithm": "random"}, None)])
    assert dropped == 0 and len(kept) == 2  # the random baseline is its own run


# --- review findings of issue 12: keys, validation, lines kept, legacy paths -----------------------------


def test_a_row_claiming_another_runs_id_for_another_agent_supersedes_nothing():
    # Before: evaluation_key was (run id, checkpoint, greedy, which): a crafted cql row "of r1" replaced r1's bc rows.
    bc = [eval_row("train", t=1.0), eval_row("held_out", t=1.0)]
    forged = [{**r, "algorithm": "cql", "time": 2.0} for r in bc] + [{**eval_row("held_out", t=3.0), "env": "minigrid/other"}]
    kept, dropped = keep_latest([(r, None) for r in bc + forged])
    assert dropped == 0 and len(kept) == 5


def test_a_finished_runs_evaluation_is_never_superseded_by_an_unfinished_one():
    final = eval_row("held_out", t=1.0, finished=True, step=100)
    mid = eval_row("held_out", t=2.0, finished=False, step=60)  # a later evaluation of the run, resumed with more steps
    (kept,), dropped = keep_latest([(final, None), (mid, None)])
    assert dropped == 1 and kept["step"] == 100
    (kept,), _ = keep_latest([(mid, None), ({**final, "time": 3.0}, None)])
    assert kept["finished"] is True


@pytest.mark.parametrize("key, value, problem", [
    ("dataset_levels", "abc", "key 'dataset_levels' = \"abc\" is not a whole number >= 0"),
    ("dataset_transitions", 1000.5, "key 'dataset_transitions' = 1000.5 is not a whole number >= 0"),
    ("train_seed", "zero", "key 'train_seed' = \"zero\" is not a whole number >= 0"),
    ("checkpoint", ["a"], "key 'checkpoint' = [\"a\"] is not a string"),
    ("study", ["x"], "key 'study' = [\"x\"] is not a string"),
    ("run_id", {"a": 1}, "key 'run_id' = {\"a\": 1} is not a string"),
    ("algorithm", 5, "key 'algorithm' = 5 is not a string"),
    ("deterministic", "false", "key 'deterministic' = \"false\" is not true or false"),
    ("finished", 1, "key 'finished' = 1 is not true or false"),
    ("time", "yesterday", "key 'time' = \"yesterday\" is not a finite number"),
    ("env", 5, "key 'env' = '5' is not SUITE/ENV"),
    ("returns", [1e308, 1e308], "'returns' holds 1e+308, beyond +-1e+15"),
    ("returns", [True, False], "'returns' is not a non-empty list of finite numbers"),
    ("settings", [1], "key 'settings' = [1] is not a mapping"),
])  # fmt: skip
def test_every_field_the_report_reads_is_checked(tmp_path, key, value, problem):
    # Before: "abc" levels crashed the gap plot, a list checkpoint crashed grouping (unhashable), 1e308 printed
    # `inf [nan, nan]` and "deterministic": "false" was read as greedy.
    path = tmp_path / "results.jsonl"
    good = eval_row()
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, key: value, "normalized": None}) + "\n")
    warnings: list[str] = []
    assert read_results(path, warnings) == [good]
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}:2: skipped: ") and problem in warnings[0]


def test_rewriting_results_keeps_every_line_it_cannot_read(tmp_path):
    # Before: `rlgen evaluate` dropped torn lines and rows with NaN returns for good when it rewrote the file.
    path = tmp_path / "results.jsonl"
    torn = '{"env": "minigrid/x", "wh'
    nan_row = json.dumps({**eval_row("train", run_id="r9"), "returns": [float("nan"), 1.0]})
    path.write_text(json.dumps(eval_row("train")) + "\n" + torn + "\n" + nan_row + "\n" + json.dumps(eval_row("held_out")) + "\n")
    _, replaced, warnings = record_results(path, [eval_row("held_out", t=2.0)])
    lines = path.read_text().splitlines()
    assert replaced == 1 and lines[1:3] == [torn, nan_row] and json.loads(lines[-1])["time"] == 2.0 and len(lines) == 4
    assert [w.split(": kept as it is")[0] for w in warnings] == [f"{path}:2", f"{path}:3"]


def test_rows_without_run_ids_are_keyed_on_their_run_directory_resolved(tmp_path, monkeypatch):
    # Before: the raw `run` string was the key: runs/p and /abs/runs/p were two runs.
    monkeypatch.chdir(tmp_path)
    legacy = {k: v for k, v in eval_row().items() if k not in ("run_id", "time")}
    res = load_results([_write(tmp_path / "a.jsonl", [{**legacy, "run": "runs/p"}]), _write(tmp_path / "b.jsonl", [{**legacy, "run": str(tmp_path / "runs/p")}])])
    assert res.dropped == 1 and res.rows[0]["run_id"] == path_run_id(tmp_path / "runs/p")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_split_facts_name_options_and_level_sets():
    from rlgen.evaluation.results import split_facts

    partial = split_facts(LevelSplit.minigrid("doorkey-5x5"))
    assert partial == split_facts(LevelSplit("minigrid", "MiniGrid-DoorKey-5x5-v0", train="0-199", validation="200-249", held_out="250-"))
    rgb = split_facts(LevelSplit("minigrid", "doorkey-5x5", train="0-199", validation="200-249", held_out="250-", options={"view": "full_rgb"}))
    fewer = split_facts(LevelSplit.minigrid("doorkey-5x5").with_train("0-24"))
    assert rgb["split_digest"] != partial["split_digest"] and rgb["split_options"]["view"] == "full_rgb"
    assert fewer["split_digest"] != partial["split_digest"] and fewer["held_out_digest"] == partial["held_out_digest"]
    easy, hard = (split_facts(LevelSplit.procgen("coinrun", distribution_mode=m)) for m in ("easy", "hard"))
    assert easy["split_digest"] != hard["split_digest"] and easy["held_out_digest"] != hard["held_out_digest"]
