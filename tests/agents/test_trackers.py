"""Optional experiment tracking (issue 16, item 9): ``logger: [tensorboard, wandb]`` sends the TensorBoard scalars
to a wandb run too, offline unless told otherwise; wandb is never required and unknown loggers are one line."""

import glob
import shutil
import sys
import time
from pathlib import Path

import pytest

from rlgen.agents.trackers import wandb_mode
from rlgen.cli import main
from rlgen.config import OfflineConfig, PPOConfig, load_config
from rlgen.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "tests" / "fixtures" / "old_runs" / "dataset"
OFFLINE = ["network=minigrid_cnn", "batch_size=16", "device=cpu", "progress=false", "steps=100", "eval.every_steps=50",
           "eval.episodes=2", "eval_num_envs=2"]  # fmt: skip
PPO = ["env=minigrid/empty-5x5", "num_envs=4", "split.num_levels=10", "ppo.n_steps=32", "ppo.num_minibatches=2", "ppo.n_epochs=1",
       "ladder.every_steps=128", "ladder.episodes=2", "eval_num_envs=2", "progress=false", "device=cpu", "total_steps=128"]  # fmt: skip


def offline_args(tmp_path: Path, *extra: str) -> list[str]:
    data = tmp_path / "dataset"
    if not data.exists():
        shutil.copytree(DATASET, data, ignore=shutil.ignore_patterns("cache", "cache.lock"))
    return ["train", str(ROOT / "configs/offline/iql.yaml"), f"dataset={data}", f"out_dir={tmp_path / 'run'}", *OFFLINE, *extra]


def test_logger_names_are_checked_in_one_line():
    cfg = load_config(None, ["env=minigrid/empty-5x5"], schema=PPOConfig)
    assert cfg.logger == ["tensorboard"] and cfg.wandb.mode is None  # the default: TensorBoard only
    assert load_config(None, ["env=minigrid/empty-5x5", "logger=[tensorboard,wandb]"], schema=PPOConfig).logger == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"key `logger`.*logger 'mlflow' is not one of: tensorboard, wandb"):
        load_config(None, ["env=minigrid/empty-5x5", "logger=[tensorboard,mlflow]"], schema=PPOConfig)
    with pytest.raises(ConfigError, match=r"must include tensorboard"):
        load_config(None, [f"dataset={DATASET}", "logger=[wandb]"], schema=OfflineConfig)
    with pytest.raises(ConfigError, match=r"wandb.mode"):
        load_config(None, [f"dataset={DATASET}", "wandb.mode=cloud"], schema=OfflineConfig)


def test_wandb_runs_offline_unless_the_config_or_wandb_mode_says_otherwise(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = load_config(None, ["env=minigrid/empty-5x5", "logger=[tensorboard,wandb]"], schema=PPOConfig)
    assert wandb_mode(cfg) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(cfg) == "disabled"
    cfg.wandb.mode = "online"
    assert wandb_mode(cfg) == "online"


def test_wandb_asked_for_but_missing_is_one_line_and_the_corrected_retry_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed, whether or not it is
    assert main(offline_args(tmp_path, "logger=[tensorboard,wandb]")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs the wandb package" in err and "pip install 'rlgen[wandb]'" in err, err
    assert not (tmp_path / "run" / "tb").exists()  # refused before training
    assert main(offline_args(tmp_path)) == 0  # the same run with TensorBoard only is not blocked by the failed one


def tensorboard_tags(tb_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in {Path(p).parent for p in glob.glob(str(tb_dir / "**" / "events.out.tfevents.*"), recursive=True)}:
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("algo", ["iql", "ppo"])
def test_a_tiny_run_writes_an_offline_wandb_run_with_its_tensorboard_scalars(algo, tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb", reason="wandb is optional: pip install 'rlgen[wandb]'")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default: no account, no network
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    (tmp_path / "wandb-dir").mkdir()
    args = offline_args(tmp_path) if algo == "iql" else ["train", str(ROOT / "configs/ppo/minigrid_doorkey.yaml"), *PPO, f"out_dir={tmp_path / 'run'}"]
    assert main([*args, "logger=[tensorboard,wandb]"]) == 0, capsys.readouterr().err
    runs = glob.glob(str(tmp_path / "wandb-dir" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1, runs
    tags = tensorboard_tags(tmp_path / "run" / "tb")
    assert {"eval/train_levels/mean_return", "train/loss/policy" if algo == "iql" else "train/loss"} & tags, tags
    # History rows are protobuf records holding each key as plain text. wandb's service process writes the file:
    # a second wandb run in one process (here, after the other parameter's) can return from finish() a few ms
    # before the service has written its last records, so the file is read until it has them (at most 30 s).
    deadline = time.monotonic() + 30
    while True:
        logged = Path(runs[0]).read_bytes()
        missing = sorted(t for t in tags if t.encode() not in logged)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"TensorBoard scalars not in the wandb run: {missing}"
    assert b"global_step" in logged
    if algo == "iql":  # a resumed run (longer: steps=150) continues the same wandb run
        assert main([*args, "logger=[tensorboard,wandb]", "steps=150"]) == 0, capsys.readouterr().err
        ids = {Path(p).name.rsplit("-", 1)[1] for p in glob.glob(str(tmp_path / "wandb-dir" / "wandb" / "offline-run-*"))}
        assert len(glob.glob(str(tmp_path / "wandb-dir" / "wandb" / "offline-run-*"))) == 2 and len(ids) == 1, ids


def test_loggers_are_not_part_of_a_runs_identity():
    from rlgen.agents.identity import config_settings

    plain = load_config(None, [f"dataset={DATASET}", "algo=iql"], schema=OfflineConfig)
    tracked = load_config(None, [f"dataset={DATASET}", "algo=iql", "logger=[tensorboard,wandb]", "wandb.project=mine"], schema=OfflineConfig)
    assert config_settings(tracked) == config_settings(plain)


def test_an_online_wandb_that_cannot_start_gives_up_in_30_seconds_with_one_line(tmp_path, monkeypatch):
    """Online with a key but no network, wandb waited about 100 s before failing; rlgen asks it to give up sooner."""
    import wandb

    from rlgen.agents.trackers import INIT_TIMEOUT_S, open_wandb_run
    from rlgen.errors import RlgenError

    seen = {}

    def no_network(**kwargs):
        seen.update(kwargs)
        raise TimeoutError("context deadline exceeded")

    monkeypatch.setattr(wandb, "init", no_network)
    cfg = load_config(None, [f"dataset={DATASET}", "algo=iql", "logger=[tensorboard,wandb]", "wandb.mode=online"], schema=OfflineConfig)
    with pytest.raises(RlgenError, match=r"wandb \(mode online\) did not start: TimeoutError: context deadline exceeded; use wandb.mode=offline"):
        open_wandb_run(cfg, tmp_path / "run")
    assert seen["mode"] == "online" and seen["settings"].init_timeout == INIT_TIMEOUT_S == 30


def test_a_logger_given_as_one_name_says_the_list_form(capsys):
    """`logger=wandb` got pydantic's "input should be a valid list"; the message now shows the form to type."""
    with pytest.raises(ConfigError, match=r"logger 'wandb': give a list, e\.g\. logger=\[tensorboard,wandb\]"):
        load_config(None, ["env=minigrid/empty-5x5", "logger=wandb"], schema=PPOConfig)
