"""Review of dt_jax / bct_jax (issue 17) as a new user, a careful reviewer and an attacker: each test here is a
defect found (fixed, or marked xfail strict while open)."""

import json
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from rlgen.errors import RlgenError  # noqa: E402


def saved_dt_model(tmp_path: Path) -> tuple[Path, dict]:
    """A fresh (untrained) tiny dt_jax agent's model file and its decoded payload."""
    from flax import serialization

    from rlgen.agents.offline_jax import core
    from rlgen.agents.offline_jax.agent import JaxOfflineAgent
    from tests.agents.test_offline_jax import NUM_ACTIONS, OBS_SHAPE
    from tests.agents.test_offline_jax_dt import MAX_TIMESTEP, jax_config

    spec = core.Spec.from_config(jax_config("dt"), OBS_SHAPE, NUM_ACTIONS, MAX_TIMESTEP)
    path = JaxOfflineAgent(spec, core.init_state(spec, 0).params, target_return=2.0).save(tmp_path / "model.msgpack")
    return path, serialization.msgpack_restore(path.read_bytes())


@pytest.mark.parametrize(
    ("spec_edit", "meta_edit"),
    [({"n_heads": 3}, {}), ({"context_length": 0}, {}), ({"max_timestep": 0}, {}), ({"num_actions": 0}, {}), ({"algo": "gpt_jax"}, {}),
     ({}, {"target_return": float("nan")})],
    ids=["n_heads_3_of_16", "context_0", "max_timestep_0", "num_actions_0", "unknown_algo", "target_return_nan"],
)
def test_a_crafted_model_file_spec_is_one_line_naming_the_file(tmp_path, spec_edit, meta_edit):
    """Found: a model.msgpack whose meta.spec is inconsistent raised TypeError/ZeroDivisionError/IndexError/ValueError
    from inside flax (a traceback from `rlgen evaluate`), and a NaN target return loaded and acted (every logit NaN,
    action 0 for ever). Now an RlgenError naming the file."""
    from flax import serialization

    from rlgen.agents.offline_jax.agent import JaxOfflineAgent

    path, payload = saved_dt_model(tmp_path)
    meta = json.loads(payload["meta"])
    meta["spec"].update(spec_edit)
    meta.update(meta_edit)
    crafted = tmp_path / "crafted" / "model.msgpack"
    crafted.parent.mkdir()
    crafted.write_bytes(serialization.msgpack_serialize({**payload, "meta": json.dumps(meta)}))
    with pytest.raises(RlgenError, match="crafted/model.msgpack"):
        JaxOfflineAgent.load(crafted, device="cpu")
    JaxOfflineAgent.load(path, device="cpu")  # the untouched file still loads
