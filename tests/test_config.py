from pathlib import Path

import pytest
import yaml

from rlgen.config import RlgenConfig, load_config, parse_overrides, write_resolved_config
from rlgen.envs import LevelSet
from rlgen.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(tmp_path: Path, data: dict, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data), overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_typo_key_names_key_and_suggests(tmp_path):
    msg = one_line_error(tmp_path, {"env": "procgen/coinrun", "split": {"trian": "0-9"}})
    assert "unknown key `split.trian`" in msg and "did you mean `split.train`" in msg
    assert "allowed keys here: num_levels, train" in msg


def test_top_level_typo(tmp_path):
    msg = one_line_error(tmp_path, {"seeed": 1})
    assert "unknown key `seeed` (did you mean `seed`?)" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    msg = one_line_error(tmp_path, {"num_envs": "many"})
    assert "key `num_envs` = 'many'" in msg and "integer" in msg


def test_unknown_game_and_suite_list_what_is_allowed(tmp_path):
    assert "unknown Procgen game 'coinrn'; allowed: bigfish" in one_line_error(tmp_path, {"env": "procgen/coinrn"})
    assert "unknown suite 'atari'; allowed: procgen, minigrid, xland" in one_line_error(tmp_path, {"env": "atari/pong"})


def test_bad_device_and_overlapping_split(tmp_path):
    assert "device 'gpu' is not one of: auto, cpu, cuda" in one_line_error(tmp_path, {"device": "gpu"})
    msg = one_line_error(tmp_path, {"split": {"train": "0-300"}})
    assert "train and held_out levels overlap in 250-300" in msg


def test_override_errors(tmp_path):
    assert "unknown key `split.foo`" in one_line_error(tmp_path, {}, "split.foo=1")
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_overrides(["seed"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_are_typed_yaml_and_nested(tmp_path):
    cfg = load_config(write(tmp_path, {"env": "procgen/coinrun"}), ["seed=3", "split.num_levels=50", "split.options.distribution_mode=hard"])
    assert cfg.seed == 3
    split = cfg.level_split()
    assert split.train == LevelSet("0-49") and split.validation == LevelSet("50-99")
    assert split.options["distribution_mode"] == "hard"


def test_name_and_out_dir_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {}))
    assert cfg.name == "exp" and cfg.out_dir == str(Path("runs") / "exp")
    assert cfg.device == "auto"


def test_resolved_config_reloads_to_the_same_config(tmp_path):
    cfg = load_config(CONFIGS / "splits" / "procgen_coinrun.yaml", ["seed=7"])
    path = write_resolved_config(cfg, tmp_path / "run", extra={"split": cfg.level_split().to_dict()})
    data = yaml.safe_load(path.read_text())
    assert data["resolved"]["split"]["train"] == "0-199"
    data.pop("resolved")
    assert RlgenConfig.model_validate(data) == cfg


@pytest.mark.parametrize("path", sorted((CONFIGS / "splits").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    cfg.level_split(check_duplicates=False)
