"""Reading a config: YAML files, ``key.sub=value`` overrides, validation against a schema, one-line errors.

Every command reads one YAML file into a schema (pydantic, ``extra="forbid"``), after applying
command-line overrides to the raw data, so an unknown key, a wrong type or an unknown game fails
before any work starts, as one line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from rlgen.config.base import RlgenConfig
from rlgen.config.shipped import close_names, resolve_config_path
from rlgen.errors import ConfigError, RlgenError


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} must look like key=value or key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e.problem})") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in YAML file ``path``, or in the shipped config ``path`` names when it is not a file
    (``configs/ppo/minigrid_doorkey.yaml`` outside a clone: ``rlgen.config.shipped``)."""
    p = resolve_config_path(path)
    if not p.is_file():
        close = close_names(path)
        hint = f" (did you mean the shipped config {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"config file {str(path)!r} does not exist{hint}; `rlgen configs ls` lists the shipped configs")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    schema: type[RlgenConfig] = RlgenConfig,
) -> RlgenConfig:
    """Read ``path`` (optional), apply ``key=value`` overrides, validate against ``schema``.

    ``name`` defaults to the file's stem. Raises ``ConfigError`` with one line on any problem.
    """
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    if path is not None and "name" not in data and schema.name_from_file:
        data["name"] = Path(path).stem
    given = parse_overrides(overrides)
    for group in getattr(schema, "alternative_keys", ()):  # an override beats the file: `episodes=7` replaces its `transitions`
        chosen = [k for k in group if given.get(k) is not None]
        if len(chosen) == 1:
            data = {**data, **{k: None for k in group if k not in given}}
    data = merge(data, given)
    return validate_config(data, schema, source=str(path) if path is not None else "config")


def validate_config(data: Mapping[str, Any], schema: type[RlgenConfig] = RlgenConfig, source: str = "config") -> RlgenConfig:
    try:
        return schema.model_validate(dict(data))
    except pydantic.ValidationError as e:
        raise ConfigError(f"{source}: {_one_line(e, schema)}") from None
    except RlgenError as e:  # raised outside a field validator (model validators)
        raise ConfigError(f"{source}: {e}") from None


def _one_line(error: pydantic.ValidationError, schema: type[BaseModel]) -> str:
    """The first error, as 'key `a.b` = value: problem; allowed: ...'."""
    err = error.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(schema, loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        did_you_mean = f" (did you mean `{'.'.join(loc[:-1] + hint[:1])}`?)" if hint else ""
        return f"unknown key `{key}`{did_you_mean}; allowed keys here: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"missing required key `{key}`"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"key `{key}` = {value!r}: {msg.lower()}"
    return f"key `{key}` = {value!r}: {msg}" if loc else msg


def _allowed_keys(schema: type[BaseModel], path: Sequence[str]) -> list[str]:
    model: Any = schema
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
        args = getattr(model, "__args__", ())
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return list(getattr(model, "model_fields", {}))


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    return json.loads(cfg.model_dump_json())
