from pathlib import Path

import pytest
import yaml

from rlgen.agents.run_dir import write_resolved_config
from rlgen.config import RlgenConfig, load_config, parse_overrides
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


# --- bad input: each family one line naming the key (or file), before any work -------------------


def _float_keys(model: type, prefix: str = "") -> list[str]:
    """Dotted keys of every float field of ``model`` and its nested models."""
    import typing

    from pydantic import BaseModel

    keys = []
    for name, field in model.model_fields.items():
        args = typing.get_args(field.annotation) or (field.annotation,)
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            keys += _float_keys(nested[0], f"{prefix}{name}.")
        elif float in args:
            keys.append(f"{prefix}{name}")
    return keys


def _schemas():
    from rlgen.config import CollectConfig, JaxPPOConfig, OfflineConfig, PPOConfig

    return {
        PPOConfig: [], JaxPPOConfig: ["env=xland/XLand-MiniGrid-R1-9x9"], OfflineConfig: ["dataset=data/x"],
        CollectConfig: ["skill=random"],
    }  # fmt: skip


FLOAT_CASES = [(schema, key) for schema in _schemas() for key in _float_keys(schema)]


@pytest.mark.parametrize(("schema", "key"), FLOAT_CASES, ids=[f"{s.__name__}.{k}" for s, k in FLOAT_CASES])
def test_every_float_refuses_inf_and_nan(schema, key):
    for value in (".inf", "-.inf", ".nan", "inf", "nan"):
        with pytest.raises(ConfigError) as info:
            load_config(None, [*_schemas()[schema], f"{key}={value}"], schema=schema)
        assert "\n" not in str(info.value) and f"key `{key}`" in str(info.value) and "finite" in str(info.value), str(info.value)


def test_the_float_sweep_covers_the_learning_rates():
    assert {"ppo.learning_rate", "ppo_jax.learning_rate", "learning_rate", "medium_fraction"} <= {k for _, k in FLOAT_CASES}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("seed=99999999999999999999", "key `seed` = 99999999999999999999: Input should be less than or equal to 4294967295"),
        ("seed=-1", "key `seed` = -1"),
        ("name=../../escaped", "key `name` = '../../escaped': a name is not a path"),
        ("name=/tmp/abs", "key `name` = '/tmp/abs': a name is not a path"),
        ("name=..", "key `name` = '..': a name is not a path"),
        ("num_envs=100000", "key `num_envs` = 100000: at most 4,096 envs at once for minigrid"),
        ("eval_num_envs=100000", "key `eval_num_envs` = 100000: at most 4,096"),
        ("checkpoint_every=0", "key `checkpoint_every` = 0"),
    ],
)
def test_train_config_bad_values(override, match):
    from rlgen.config import PPOConfig

    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "ppo/minigrid_doorkey.yaml", [override], schema=PPOConfig)
    assert "\n" not in str(info.value) and match in str(info.value)


def test_xland_allows_more_envs_than_cpu_suites():
    from rlgen.config import JaxPPOConfig

    assert load_config(None, ["num_envs=8192", "eval_num_envs=8192"], schema=JaxPPOConfig).num_envs == 8192
    with pytest.raises(ConfigError, match="at most 65,536 envs at once for xland"):
        load_config(None, ["num_envs=100000"], schema=JaxPPOConfig)


def test_out_dir_that_is_a_file_or_under_one(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for out, match in ((f, "is a file"), (f / "run", f"has a file in its path ({f})")):
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"out_dir={out}"])
        assert "\n" not in str(info.value) and str(out) in str(info.value) and match in str(info.value)
    assert load_config(None, [f"out_dir={tmp_path / 'new' / 'run'}"]).out_dir == str(tmp_path / "new" / "run")


@pytest.mark.parametrize("algo", ["[ppo]", "{a: 1}", "3"])
def test_algo_that_is_not_a_name(algo):
    from rlgen.agents import train_schema

    with pytest.raises(ConfigError) as info:
        train_schema(None, [f"algo={algo}"])
    assert "\n" not in str(info.value) and "key `algo`" in str(info.value) and "one of: ppo, ppo_jax, bc" in str(info.value)


def test_study_name_and_seeds_are_checked_too():
    from rlgen.pipeline.study import StudyConfig

    for override, match in (("name=../x", "a name is not a path"), ("seeds=[99999999999999999999]", "must be <= 4294967295"),
                            ("ray.connect_timeout_s=.inf", "finite")):  # fmt: skip
        with pytest.raises(ConfigError, match=match.replace("(", r"\(")):
            load_config(None, ["datasets={skills: [random]}", override], schema=StudyConfig)


# --- size-like keys: documented upper bounds, one line naming the key and the limit -------------------


def _size_cases():
    from rlgen.config import CollectConfig, JaxPPOConfig, OfflineConfig, PPOConfig
    from rlgen.pipeline.study import StudyConfig

    ppo, jax, offline, dt = (PPOConfig, []), (JaxPPOConfig, []), (OfflineConfig, ["dataset=data/x"]), (OfflineConfig, ["dataset=data/x", "algo=dt"])
    study = (StudyConfig, ["datasets={skills: [random]}"])
    return [
        (*ppo, "total_steps=1000000000000", "total_steps", "100,000,000,000"),
        (*ppo, "ppo.n_steps=1000000000", "ppo.n_steps", "1,048,576"),
        (*ppo, "ppo.n_epochs=1000000", "ppo.n_epochs", "1,000"),
        (*ppo, "ladder.episodes=1000000000", "ladder.episodes", "1,000,000"),
        (*ppo, "ladder.every_steps=1000000000000", "ladder.every_steps", "100,000,000,000"),
        (*ppo, "checkpoint_every=1000000000000", "checkpoint_every", "100,000,000,000"),
        (*ppo, "split.duplicate_check_levels=1000000000", "split.duplicate_check_levels", "1,000,000"),
        (*jax, "ppo_jax.n_steps=1000000", "ppo_jax.n_steps", "16,777,216"),
        (*jax, "ppo_jax.hidden_dim=1000000", "ppo_jax.hidden_dim", "16,384"),
        (*jax, "ppo_jax.embed_dim=1000000", "ppo_jax.embed_dim", "16,384"),
        (*jax, "log_every_steps=1000000000000", "log_every_steps", "100,000,000,000"),
        (*offline, "steps=100000000000", "steps", "10,000,000,000"),
        (*offline, "batch_size=1000000", "batch_size", "65,536"),
        (*offline, "eval.episodes=1000000000", "eval.episodes", "1,000,000"),
        (*offline, "eval.every_steps=100000000000", "eval.every_steps", "10,000,000,000"),
        (*offline, "target_update_interval=100000000000", "target_update_interval", "10,000,000,000"),
        (*offline, "checkpoint_every=100000000000", "checkpoint_every", "10,000,000,000"),
        (*dt, "context_length=1000000", "context_length", "1,024"),
        (*dt, "embed_dim=1000000", "embed_dim", "8,192"),
        (*dt, "n_layers=1000000", "n_layers", "128"),
        (*dt, "n_heads=1000", "n_heads", "128"),
        (*dt, "n_layers=100 embed_dim=8192 n_heads=8", "n_layers", "2,000,000,000"),
        (*dt, "batch_size=65536 context_length=100", "batch_size", "1,048,576"),
        (*study, "evaluation.episodes=1000000000", "evaluation.episodes", "1,000,000"),
        (*study, "evaluation.num_envs=100000", "evaluation.num_envs", "4,096"),
        (CollectConfig, ["skill=random"], "split.duplicate_check_levels=1000000000", "split.duplicate_check_levels", "1,000,000"),
    ]  # fmt: skip


SIZE_CASES = _size_cases()


@pytest.mark.parametrize(("schema", "base", "override", "key", "limit"), SIZE_CASES, ids=[c[2] for c in SIZE_CASES])
def test_size_like_keys_have_upper_bounds(schema, base, override, key, limit):
    with pytest.raises(ConfigError) as info:
        load_config(None, [*base, *override.split()], schema=schema)
    message = str(info.value)
    assert "\n" not in message and f"key `{key}`" in message and f"at most {limit}" in message, message


def test_values_up_to_the_bounds_are_accepted():
    from rlgen.config import JaxPPOConfig, OfflineConfig, PPOConfig

    assert load_config(None, ["num_envs=4096", "ppo.n_steps=256", "total_steps=100000000000"], schema=PPOConfig).ppo.n_steps == 256
    assert load_config(None, ["num_envs=65536", "ppo_jax.n_steps=256"], schema=JaxPPOConfig).num_envs == 65536
    dt = load_config(None, ["dataset=x", "algo=dt", "context_length=1024", "batch_size=1024", "embed_dim=4096", "n_layers=8"], schema=OfflineConfig)
    assert dt.context_length == 1024


def test_every_limit_is_documented_in_the_readme():
    from rlgen.config import LIMITS

    readme = (CONFIGS.parent / "README.md").read_text()
    section = readme[readme.index("### Limits of size-like keys"):]
    section = section[: section.index("\n#", 4)]
    for name, limit in LIMITS.items():
        assert f"| {limit.value:,} |" in section, f"README's limits table lacks {name} ({limit.value:,})"


# --- strict numbers, non-empty out_dir --------------------------------------------------------------


@pytest.mark.parametrize("override", ["total_steps=true", "seed=false", "num_envs=true", "ppo.n_steps=true", "ppo.learning_rate=true",
                                      "checkpoint_every=true", "split.num_levels=true", "split.train=true"])  # fmt: skip
def test_true_and_false_are_not_numbers(override):
    from rlgen.config import PPOConfig

    key = override.split("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "ppo/minigrid_doorkey.yaml", [override], schema=PPOConfig)
    assert "\n" not in str(info.value) and f"key `{key}`" in str(info.value) and "true/false is not" in str(info.value)


def test_numbers_and_booleans_still_load_where_they_belong():
    from rlgen.config import PPOConfig
    from rlgen.pipeline.study import StudyConfig

    cfg = load_config(CONFIGS / "ppo/minigrid_doorkey.yaml", ["ppo.learning_rate=1", "progress=false", "split.train=[1, 2]", "split.num_levels=null"],
                      schema=PPOConfig)  # fmt: skip
    assert cfg.ppo.learning_rate == 1.0 and cfg.progress is False
    with pytest.raises(ConfigError, match=r"key `seeds` = \[0, True\]: true/false is not an integer"):
        load_config(None, ["datasets={skills: [random]}", "seeds=[0, true]"], schema=StudyConfig)


@pytest.mark.parametrize("value", ["''", "' '"])
def test_an_empty_out_dir_is_refused_by_every_schema(value):
    from rlgen.config import CollectConfig, JaxPPOConfig, OfflineConfig, PPOConfig
    from rlgen.pipeline.study import StudyConfig

    for schema, base in ((PPOConfig, []), (JaxPPOConfig, []), (OfflineConfig, ["dataset=x"]), (CollectConfig, ["skill=random"]),
                         (StudyConfig, ["datasets={skills: [random]}"])):  # fmt: skip
        with pytest.raises(ConfigError, match="out_dir .* is not a directory path"):
            load_config(None, [*base, f"out_dir={value}"], schema=schema)


@pytest.mark.parametrize("threshold", [0, 1])
def test_a_bcq_threshold_that_d3rlpy_cannot_act_with_is_refused_in_one_line_before_training(threshold, capsys):
    # 0: math.log(0) inside d3rlpy at the first evaluation, after the whole training; 1: no action kept, always action 0
    from rlgen.cli import main

    assert main(["train", str(CONFIGS / "offline/bcq.yaml"), f"bcq_threshold={threshold}", "dataset=nowhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bcq_threshold" in err[0] and str(threshold) in err[0], err
