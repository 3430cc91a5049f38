"""Configs: YAML loading, ``key.sub=value`` overrides, one-line errors, and one light schema per kind.

``loading`` reads and validates; ``base`` holds what every config shares (``RlgenConfig``, ``SplitConfig``,
limits); ``ppo``, ``ppo_jax``, ``offline``, ``offline_jax`` and ``collect`` are the schemas of ``rlgen train`` and
``rlgen collect``. None imports torch, SB3, d3rlpy or JAX, so a bad config fails before they load.
Which schema an ``algo`` uses is the algorithm registry's business (``rlgen.agents.registry``); the
resolved config is written beside every run by ``rlgen.agents.run_dir.write_resolved_config``.
"""

from rlgen.config.base import (
    ENCODER_NAMES,
    LIMITS,
    MAX_NUM_ENVS,
    MAX_SEED,
    LadderSettings,
    Limit,
    OnlineConfig,
    RlgenConfig,
    SplitConfig,
    StrictModel,
    check_name,
    check_network_name,
    check_out_dir,
    checkpoint_interval,
    human_count,
)
from rlgen.config.collect import SKILLS, CollectConfig
from rlgen.config.loading import config_to_dict, load_config, merge, parse_overrides, read_yaml, validate_config
from rlgen.config.offline import OFFLINE_ALGOS, OfflineConfig, OfflineEvalSettings
from rlgen.config.offline_jax import JAX_OFFLINE_ALGOS, JaxOfflineConfig
from rlgen.config.ppo import PPOConfig, PPOSettings
from rlgen.config.ppo_jax import JaxPPOConfig, JaxPPOSettings
from rlgen.errors import ConfigError

__all__ = ["ENCODER_NAMES", "JAX_OFFLINE_ALGOS", "LIMITS", "Limit", "MAX_NUM_ENVS", "MAX_SEED", "OFFLINE_ALGOS", "SKILLS", "CollectConfig",
           "ConfigError", "JaxOfflineConfig", "JaxPPOConfig",
           "JaxPPOSettings", "LadderSettings", "OfflineConfig", "OfflineEvalSettings", "OnlineConfig", "PPOConfig", "PPOSettings", "RlgenConfig",
           "SplitConfig", "StrictModel", "check_name", "check_network_name", "check_out_dir", "checkpoint_interval", "config_to_dict",
           "human_count", "load_config", "merge", "parse_overrides", "read_yaml", "validate_config"]  # fmt: skip
