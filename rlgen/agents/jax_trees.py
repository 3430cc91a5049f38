"""Restoring JAX parameter trees read from msgpack files, checked against the tree the agent expects.

Shared by the JAX PPO and the JAX offline agents: a file that does not have exactly the structure, shapes
and dtypes of a fresh agent's tree is one ``RlgenError`` naming the file and the first bad entry, never a
shape error from inside JAX later on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlgen.errors import RlgenError


def restore_tree(template: Any, loaded: Any, path: Path, what: str) -> Any:
    """``loaded`` (a restored msgpack tree) as device arrays shaped like ``template`` (arrays or
    ``ShapeDtypeStruct``s); anything else is one ``RlgenError`` naming ``path`` and the first bad entry
    (``what``: the tree's name in the message, e.g. ``params``)."""
    import jax  # noqa: PLC0415
    from flax import serialization  # noqa: PLC0415

    want = jax.tree_util.tree_flatten_with_path(serialization.to_state_dict(template))[0]
    try:
        got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
    except Exception:  # noqa: BLE001 - not a tree at all
        got = {}
    for key, ref in want:
        v = got.get(jax.tree_util.keystr(key))
        if not isinstance(v, np.ndarray) or v.shape != tuple(ref.shape) or v.dtype != ref.dtype:
            found = f"{type(v).__name__} {getattr(v, 'shape', '')} {getattr(v, 'dtype', '')}".strip() if v is not None else "nothing"
            raise RlgenError(f"{path}: {what}{jax.tree_util.keystr(key)} should be {np.dtype(ref.dtype)}{list(ref.shape)}, found {found}")
    if len(got) != len(want):
        raise RlgenError(f"{path}: {what} holds {len(got)} arrays, this agent has {len(want)}")
    return serialization.from_state_dict(template, jax.tree_util.tree_map(jax.numpy.asarray, loaded))
