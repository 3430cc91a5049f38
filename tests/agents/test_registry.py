"""The algorithm registry: every entry points at real code, bad names are one line, and an algorithm registered
from outside rlgen trains, loads, collects and evaluates through the CLI and the pipeline like a built-in one."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import Field

from rlgen.agents import Agent, available_algorithms, get_algorithm, load_agent, register_algorithm, train_schema
from rlgen.agents.run_dir import final_checkpoint, keep_rung, locks_run_dir, write_resolved_config, write_state
from rlgen.cli import main
from rlgen.config import ENCODER_NAMES, JaxOfflineConfig, JaxPPOConfig, OfflineConfig, PPOConfig, RlgenConfig
from rlgen.errors import ConfigError
from rlgen.evaluation import evaluate_on_levels

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_in_algorithms_and_their_code():
    assert available_algorithms()[:8] == ("ppo", "ppo_jax", "bc", "bcq", "cql", "iql", "dt", "bct")  # then this file's own
    assert available_algorithms("online")[:2] == ("ppo", "ppo_jax") and "constant" in available_algorithms("online")
    assert get_algorithm("ppo").schema is PPOConfig and get_algorithm("ppo_jax").schema is JaxPPOConfig
    assert available_algorithms()[8:14] == ("bc_jax", "iql_jax", "cql_jax", "dt_jax", "bct_jax", "bcq_jax")  # the JAX offline agents
    assert all(get_algorithm(a).schema is (JaxOfflineConfig if a.endswith("_jax") else OfflineConfig) for a in available_algorithms("offline"))
    for algo in available_algorithms()[:14]:
        a = get_algorithm(algo)
        if algo.endswith("_jax") and importlib.util.find_spec("xminigrid") is None:
            continue
        assert all(callable(f) for f in (a.trainer(), a.loader(), a.evaluator()))
        assert a.collector() is None or callable(a.collector())


def test_unknown_or_malformed_algorithms_are_one_line():
    with pytest.raises(ConfigError, match=r"config: key `algo` = 'sac': not one of: ppo, ppo_jax, bc, bcq, cql, iql, dt, bct"):
        train_schema(None, ["algo=sac"])
    with pytest.raises(ConfigError, match="kind 'both' is not one of: online, offline"):
        register_algorithm("odd", "both", PPOConfig, train="x:y", load="x:y")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="schema must be a subclass of rlgen.config.RlgenConfig"):
        register_algorithm("odd", "online", dict, train="x:y", load="x:y")  # type: ignore[arg-type]


def test_networks_match_the_names_configs_check_and_every_suite_default_is_one():
    from rlgen.agents import networks
    from rlgen.envs import get_suite

    assert networks.ENCODERS == ENCODER_NAMES
    for suite, env, options in (("procgen", "coinrun", {}), ("minigrid", "MiniGrid-Empty-5x5-v0", {"view": "partial"}),
                                ("minigrid", "MiniGrid-Empty-5x5-v0", {"view": "full_rgb"}), ("xland", "XLand-MiniGrid-R1-9x9", {})):  # fmt: skip
        assert get_suite(suite).default_encoder(env, options) in ENCODER_NAMES


def test_checking_a_config_imports_no_torch_sb3_d3rlpy_or_jax(tmp_path):
    # Issue 16 builds on this: a bad config fails before seconds of heavy imports.
    import subprocess

    heavy = "sorted(m for m in ('torch', 'stable_baselines3', 'd3rlpy', 'jax') if m in sys.modules)"
    code = ("import sys\nfrom rlgen.agents import train_schema\nfrom rlgen.config import load_config\nfrom rlgen.errors import ConfigError\n"
            "for args in (['algo=bc', 'dataset=data/x'], ['algo=ppo', 'env=minigrid/empty-5x5'], ['algo=ppo', 'env=procgen/coinrun']):\n"
            "    load_config(None, args, schema=train_schema(None, args))\n"
            "try:\n    load_config(None, ['algo=bc', 'stpes=3'], schema=train_schema(None, ['algo=bc']))\nexcept ConfigError:\n    pass\n"
            f"print({heavy})\n")  # fmt: skip
    if importlib.util.find_spec("xminigrid") is not None:  # naming an xland env needs xminigrid's registry, which imports JAX
        code += f"load_config(None, ['algo=ppo_jax'], schema=train_schema(None, ['algo=ppo_jax']))\nprint({heavy})\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "['jax']" if "ppo_jax" in code else ""]


# --- an algorithm of one's own -------------------------------------------------------------------------


class ConstantConfig(RlgenConfig):
    """A toy online algorithm: always the same action (``action``), "trained" by keeping two ladder rungs."""

    algo: str = "constant"
    total_steps: int = Field(default=64, ge=2)
    action: int = 2
    eval_num_envs: int = 2
    progress: bool = True


class ConstantAgent:
    episodic = False

    def __init__(self, num_actions: int, action: int) -> None:
        self.num_actions, self.action = num_actions, action

    def act(self, obs, deterministic=False):
        return np.full(len(obs), self.action, dtype=np.int64)

    def save(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"num_actions": self.num_actions, "action": self.action}))
        return Path(path)

    @classmethod
    def load(cls, path, device="auto"):
        data = json.loads(Path(path).read_text())
        return cls(data["num_actions"], data["action"])


@locks_run_dir
def train_constant(cfg: ConstantConfig) -> Path:
    run, split = Path(cfg.out_dir), cfg.level_split()
    write_resolved_config(cfg, run, extra={"split": split.to_dict()})
    agent = ConstantAgent(7, cfg.action)
    for step in (cfg.total_steps // 2, cfg.total_steps):
        rel = f"ladder/step_{step}.json"
        agent.save(run / rel)
        result = evaluate_on_levels(agent, split, "train", episodes=2, seed=cfg.seed, num_envs=cfg.eval_num_envs)
        keep_rung(run, split, step, rel, result, deterministic=False)
    write_state(run, "checkpoints/state.json", cfg.total_steps, finished=True)
    return run


def load_constant(run_dir, checkpoint=None, device="auto"):
    return ConstantAgent.load(final_checkpoint(run_dir, checkpoint, "ladder/none"))


@pytest.fixture(scope="module", autouse=True)
def constant_algorithm():
    register_algorithm("constant", "online", ConstantConfig, train=train_constant, load=load_constant)


def test_an_algorithm_of_ones_own_trains_loads_and_evaluates_through_the_cli(tmp_path, capsys):
    config = tmp_path / "constant.yaml"
    config.write_text(yaml.safe_dump({"algo": "constant", "env": "minigrid/empty-5x5", "split": {"num_levels": 10}, "out_dir": str(tmp_path / "run")}))
    assert main(["train", str(config)]) == 0
    loaded = load_agent(tmp_path / "run")
    assert isinstance(loaded.agent, Agent) and loaded.algo == "constant" and loaded.num_actions == 7
    assert loaded.act(np.zeros((3, 3, 7, 7), np.uint8)).tolist() == [2, 2, 2]
    assert main(["evaluate", str(tmp_path / "run"), "--episodes", "3", "--random-baseline"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [(r["agent"], r["which"], r["algorithm"]) for r in rows][:2] == [("constant", "train", "constant"), ("constant", "held_out", "constant")]
    assert rows[0]["lengths"] == [100, 100, 100]  # "forward" into the wall until Empty-5x5's time limit


def test_a_study_trains_any_registered_online_algorithm(tmp_path, monkeypatch, capsys):
    # Before: the pipeline's online stage could only train SB3 PPO (`ppo.algo` did not exist).
    monkeypatch.chdir(tmp_path)
    study = {"name": "own", "out_dir": "study", "envs": ["minigrid/empty-5x5"], "split": {"num_levels": 10}, "seeds": [0], "device": "cpu",
             "ppo": {"algo": "constant", "set": {"total_steps": 64}},
             "datasets": {"skills": ["mixed"], "transitions": [150], "set": {"num_envs": 2, "shard_transitions": 100}},
             "offline": {"algos": ["bc"], "set": {"steps": 10, "batch_size": 16, "network": "minigrid_cnn", "checkpoint_every": 10,
                                                  "eval": {"enabled": False}}},
             "evaluation": {"episodes": 2, "num_envs": 2}, "workers": 1}  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert main(["run", "study.yaml"]) == 0, capsys.readouterr().out
    manifest = json.loads((tmp_path / "study/data/empty-5x5-mixed-150-s0/manifest.json").read_text())
    assert [p["step"] for p in manifest["policies"]] == [64, 32]  # expert: the last rung, medium: the earlier one
    rows = [json.loads(line) for f in sorted((tmp_path / "study/eval").rglob("results.jsonl")) for line in f.read_text().splitlines()]
    assert {(r["agent"], r["algorithm"]) for r in rows} == {("constant", "constant"), ("bc", "bc")}


def test_a_study_plans_the_jax_ppo_as_its_online_algorithm(tmp_path, monkeypatch, capsys):
    pytest.importorskip("xminigrid", reason="the JAX PPO needs the jax extra: pip install 'rlgen[jax]'")
    monkeypatch.chdir(tmp_path)
    study = {"name": "jax", "envs": ["xland/doorkey-5x5"], "split": {"num_levels": 20}, "ppo": {"algo": "ppo_jax", "config": str(ROOT / "configs/ppo_jax/minigrid_doorkey.yaml")},
             "datasets": {"skills": ["expert"], "transitions": [1000]}, "offline": {"algos": ["bc"]}}  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert main(["run", "study.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ppo       ppo/minigrid-doorkey-5x5-s0" in out and "collect   data/minigrid-doorkey-5x5-expert-1k-s0" in out
    from rlgen.pipeline import load_study

    _, stages = load_study(tmp_path / "study.yaml")
    assert stages[0].config["algo"] == "ppo_jax" and stages[0].config["ppo_jax"]["n_steps"] == 16


class BareConfig(RlgenConfig):
    """An online algorithm's schema with only what RlgenConfig asks for: its budget has its own name and there
    is no ``progress`` switch (review of issue 14: the CLI read ``cfg.total_steps``, the pipeline set ``cfg.progress``)."""

    algo: str = "bare"
    budget: int = Field(default=64, ge=2)


@locks_run_dir
def train_bare(cfg: BareConfig) -> Path:
    run, split = Path(cfg.out_dir), cfg.level_split()
    write_resolved_config(cfg, run, extra={"split": split.to_dict()})
    agent = ConstantAgent(7, 2)
    agent.save(run / "ladder/step_2.json")
    keep_rung(run, split, cfg.budget, "ladder/step_2.json", evaluate_on_levels(agent, split, "train", episodes=2, seed=cfg.seed, num_envs=2), deterministic=False)
    write_state(run, "checkpoints/state.json", cfg.budget, finished=True)
    return run


def test_an_algorithm_needs_no_fields_beyond_rlgen_config_in_the_cli_or_a_study(tmp_path, monkeypatch, capsys):
    register_algorithm("bare", "online", BareConfig, train=train_bare, load=load_constant)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump({"algo": "bare", "env": "minigrid/empty-5x5", "split": {"num_levels": 10}, "out_dir": "run"}))
    assert main(["train", "bare.yaml"]) == 0, capsys.readouterr().err
    assert "trained bare on minigrid/MiniGrid-Empty-5x5-v0; run directory run" in capsys.readouterr().out
    study = {"name": "bare", "out_dir": "study", "envs": ["minigrid/empty-5x5"], "split": {"num_levels": 10}, "seeds": [0], "device": "cpu",
             "ppo": {"algo": "bare", "set": {"budget": 32}}, "evaluation": {"episodes": 2, "num_envs": 2}, "workers": 1}  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert main(["run", "study.yaml"]) == 0, capsys.readouterr().out
    rows = [json.loads(line) for f in sorted((tmp_path / "study/eval").rglob("results.jsonl")) for line in f.read_text().splitlines()]
    assert {(r["agent"], r["which"]) for r in rows} >= {("bare", "train"), ("bare", "held_out")}


def test_an_offline_algorithm_registered_with_rlgens_schema_passes_its_validation():
    # Before: OfflineConfig's `algo` validator knew only bc, bcq, cql, iql, dt, bct, so `algo: my_bc` registered
    # with OfflineConfig as its schema (README "Your own algorithm") failed validation with "not one of: bc, ...".
    from rlgen.config import load_config, validate_config

    register_algorithm("my_bc", "offline", OfflineConfig, train="rlgen.agents.offline_train:train_offline", load="rlgen.agents.offline:load_run")
    dataset = str(ROOT / "tests" / "fixtures" / "old_runs" / "dataset")
    cfg = load_config(None, ["algo=my_bc", f"dataset={dataset}"], schema=train_schema(None, ["algo=my_bc"]))
    assert cfg.algo == "my_bc" and cfg.name == "my_bc-dataset-s0"
    with pytest.raises(ConfigError, match=r"algo 'sac' is not one of: bc, bcq, cql, iql, dt, bct, my_bc"):
        validate_config({"algo": "sac", "dataset": dataset}, OfflineConfig)
    with pytest.raises(ConfigError, match="is not one of: bc_jax"):  # registered with OfflineConfig, not the JAX schema
        validate_config({"algo": "my_bc", "dataset": dataset}, JaxOfflineConfig)


def test_train_help_lists_the_registered_algorithms(capsys):
    # Before: `rlgen train --help` named the algorithms by hand, so a registered one (here `constant`) was missing.
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "online: " + ", ".join(available_algorithms("online")) in text
    assert "offline: " + ", ".join(available_algorithms("offline")) in text and "constant" in text
