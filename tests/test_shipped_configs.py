"""Shipped configs: every file of configs/ is package data, listed, shown and copied by `rlgen configs`, and a
config argument that is not a file but names a shipped config resolves to it, from any directory."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rlgen.cli import main
from rlgen.config import OfflineConfig, PPOConfig, load_config
from rlgen.config.shipped import shipped_configs
from rlgen.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REPO_CONFIGS = sorted(p.relative_to(ROOT / "configs").with_suffix("").as_posix() for p in (ROOT / "configs").rglob("*.yaml"))


def test_every_config_of_the_repository_is_shipped_by_name():
    assert list(shipped_configs()) == REPO_CONFIGS and len(REPO_CONFIGS) > 30
    for name, path in shipped_configs().items():
        assert path.read_bytes() == (ROOT / "configs" / f"{name}.yaml").read_bytes()


def test_configs_ls_show_copy(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "ls"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == REPO_CONFIGS
    assert main(["configs", "ls", "offline"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == ["offline/bc", "offline/bcq", "offline/bct", "offline/cql", "offline/dt", "offline/iql"]
    assert "Behaviour cloning" in out
    assert main(["configs", "show", "ppo/minigrid_doorkey"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs/ppo/minigrid_doorkey.yaml").read_text()
    assert main(["configs", "copy", "ppo/minigrid_doorkey", "my.yaml"]) == 0
    assert (tmp_path / "my.yaml").read_text() == (ROOT / "configs/ppo/minigrid_doorkey.yaml").read_text()
    capsys.readouterr()
    # a second copy onto the same file is refused in one line; --force overwrites; a directory gets the file's name
    assert main(["configs", "copy", "ppo/minigrid_doorkey", "my.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "rlgen: error: 'my.yaml' exists; choose another file or pass --force to overwrite it"
    assert main(["configs", "copy", "offline/bc", "my.yaml", "--force"]) == 0
    assert "algo: bc" in (tmp_path / "my.yaml").read_text()
    (tmp_path / "mine").mkdir()
    assert main(["configs", "copy", "configs/offline/cql.yaml", "mine"]) == 0 and (tmp_path / "mine" / "cql.yaml").is_file()
    capsys.readouterr()
    assert main(["configs", "show", "ppo/minigrid_dorkey"]) == 2
    assert "no shipped config 'ppo/minigrid_dorkey' (did you mean ppo/minigrid_doorkey" in capsys.readouterr().err


def test_a_config_argument_that_names_a_shipped_config_resolves_to_it_from_an_empty_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for spelling in ("configs/ppo/minigrid_doorkey.yaml", "ppo/minigrid_doorkey.yaml", "ppo/minigrid_doorkey"):
        cfg = load_config(spelling, ["total_steps=1000"], schema=PPOConfig)
        assert (cfg.name, cfg.env, cfg.total_steps) == ("ppo-doorkey", "minigrid/MiniGrid-DoorKey-6x6-v0", 1000)
    # a file of that path in the working directory wins over the shipped one
    (tmp_path / "configs" / "ppo").mkdir(parents=True)
    (tmp_path / "configs" / "ppo" / "minigrid_doorkey.yaml").write_text("name: mine\nalgo: ppo\nenv: minigrid/empty-5x5\n")
    assert load_config("configs/ppo/minigrid_doorkey.yaml", schema=PPOConfig).name == "mine"
    # commands find them too: splits show by name, train past the file to its dataset
    assert main(["splits", "show", "splits/minigrid_doorkey"]) == 0
    assert "held_out" in capsys.readouterr().out.replace("-", "_")
    assert main(["train", "configs/offline/bc.yaml"]) == 2
    assert "no dataset at 'data/coinrun-expert-1M'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"config file 'offline/bcc.yaml' does not exist \(did you mean the shipped config offline/bc"):
        load_config("offline/bcc.yaml", schema=OfflineConfig)


def test_the_wheel_ships_every_config_and_a_fresh_directory_runs_them(tmp_path):
    """Build the wheel (no network, no deps), unpack it, and run rlgen from it in an empty directory."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "configs", src / "configs")
    shutil.copytree(ROOT / "rlgen", src / "rlgen", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(src)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("rlgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"rlgen/configs/{n}.yaml" for n in REPO_CONFIGS} <= names and "rlgen/pipeline/quickstart.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import rlgen, sys; from rlgen.cli import main; print(rlgen.__file__); "
            "sys.exit(main(sys.argv[1:]))")  # fmt: skip
    ls = subprocess.run([sys.executable, "-c", code, "configs", "ls", "ppo"], capture_output=True, text=True, timeout=120, cwd=empty, env=env)
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.splitlines()[0] == str(site / "rlgen" / "__init__.py") and "ppo/minigrid_doorkey" in ls.stdout
    show = subprocess.run([sys.executable, "-c", code, "splits", "show", "configs/splits/procgen_coinrun.yaml"], capture_output=True, text=True,
                          timeout=120, cwd=empty, env=env)  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert "250" in show.stdout and os.listdir(empty) == []
