"""Which agent a report row is about: :class:`Agent` (everything that makes two runs the same experiment,
except the game and the seed), the short labels the report prints, and which agents are compared.

Two runs share a report row only when every field of their :class:`Agent` is equal: the algorithm, the
training levels, the dataset's skill, levels and size, the study, the checkpoint, the acting mode, the
split (a digest of its options and level sets: Procgen easy and hard never mix), the config without seed
and neutral keys (a digest: BC with another learning rate is another agent) and whether the scores are
normalized (normalized and raw returns never share a row).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from rlgen.agents import available_algorithms
from rlgen.config import human_count
from rlgen.evaluation.results import row_algorithm


def _sortable(v: Any) -> tuple:
    if v is None:
        return (2, "")
    if isinstance(v, (bool, int, float)):
        return (0, float(v))
    return (1, str(v))


def _pairs(mapping: Any) -> tuple[tuple[str, str], ...]:
    """A mapping as sorted (key, JSON value) pairs: hashable, comparable."""
    if not isinstance(mapping, dict):
        return ()
    return tuple(sorted((str(k), json.dumps(v, sort_keys=True, default=str)) for k, v in mapping.items()))


@dataclasses.dataclass(frozen=True)
class Agent:
    """Everything that makes two results the same experiment, except the game and the seed.

    ``split_options`` and ``settings`` (sorted pairs) are what the split and config digests stand for:
    they name the difference in labels and take no part in equality.
    """

    algorithm: str
    train_levels: int | None
    dataset_skill: str | None
    dataset_levels: int | None
    dataset_transitions: int | None
    study: str | None
    checkpoint: str | None
    deterministic: bool
    split_digest: str | None = None
    #: per game (it names the env): rows are keyed on (agent, env, held-out digest), so it takes no part in
    #: equality and one agent's games aggregate
    held_out_digest: str | None = dataclasses.field(default=None, compare=False)
    config_digest: str | None = None
    normalized: bool = True
    split_options: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False)
    settings: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False)

    @classmethod
    def of(cls, row: dict[str, Any], normalized: bool | None = None) -> "Agent":
        """The agent of a row; ``normalized`` (default: whether the row has normalized scores) says
        whether the run's scores are normalized returns."""
        return cls(row_algorithm(row), row.get("train_levels"), row.get("dataset_skill"), row.get("dataset_levels"), row.get("dataset_transitions"),
                   row.get("study"), row.get("checkpoint"), bool(row.get("deterministic", False)), row.get("split_digest"),
                   row.get("held_out_digest"), row.get("config_digest"), row.get("normalized") is not None if normalized is None else normalized,
                   _pairs(row.get("split_options")), _pairs(row.get("settings")))  # fmt: skip

    @property
    def levels(self) -> int | None:
        """Training levels it learned from: its dataset's, else the split's (online agents)."""
        return self.dataset_levels if self.dataset_levels is not None else self.train_levels

    def sort_key(self) -> tuple:
        return tuple(_sortable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.compare)


def _differing(mappings: list[dict[str, str]]) -> list[str]:
    """Keys whose values are not the same in all ``mappings`` (a missing key counts as a value)."""
    keys = sorted(set().union(*mappings)) if mappings else []
    return [k for k in keys if len({m.get(k) for m in mappings}) > 1]


def _short(key: str, value: str | None) -> str:
    return f"{key.rsplit('.', 1)[-1]}={'default' if value is None else json.loads(value)}"


def agent_labels(agents: Iterable[Agent]) -> dict[Agent, str]:
    """Short unique names: the algorithm, plus each identity field that takes two or more values
    among the agents shown (``bc-expert``, ``cql-mixed-25lv-1M``, ``ppo``); agents that would still
    share a name also get the fields in which they differ: the study (``@-``: none), the checkpoint
    (``:final``), the acting mode (``sampled``), ``raw`` (scores not normalized), the split options in
    which they differ (``distribution_mode=hard``) and the config settings (``learning_rate=0.003``),
    ``na`` where a value is missing."""
    agents = sorted(set(agents), key=Agent.sort_key)
    parts = {
        "skill": lambda a: a.dataset_skill,
        "levels": lambda a: None if a.levels is None else f"{a.levels}lv",
        "size": lambda a: None if a.dataset_transitions is None else human_count(int(a.dataset_transitions)),
        "study": lambda a: None if a.study is None else f"@{a.study}",
        "checkpoint": lambda a: None if a.checkpoint is None else f":{a.checkpoint}",
        "greedy": lambda a: "greedy" if a.deterministic else None,
        "scores": lambda a: None if a.normalized else "raw",
    }
    dashes = {"study": "@-", "checkpoint": ":final", "greedy": "sampled", "scores": None}  # normalized: the norm, no tag

    def name(a: Agent, fields: Iterable[str], dash: bool = False, extra: tuple[str, ...] = ()) -> str:
        label = a.algorithm
        for f in fields:
            value = parts[f](a) or (dashes.get(f, "na") if dash else None)
            if value is not None:
                label += value if value[0] in "@:" else f"-{value}"
        return label + "".join(f"[{e}]" for e in extra if e)

    varying = [f for f in ("skill", "levels", "size", "study", "checkpoint", "greedy") if len({parts[f](a) for a in agents} - {None}) > 1]
    first = {a: name(a, varying) for a in agents}
    labels: dict[Agent, str] = {}
    for a in agents:
        twins = [b for b in agents if first[b] == first[a]]
        if len(twins) == 1:
            labels[a] = first[a]
            continue
        extra = [f for f, get in parts.items() if f not in varying and len({get(b) for b in twins}) > 1]
        shown = [f for f in parts if f in varying or f in extra]
        # what the digests stand for, in the keys where the twins differ
        tags = []
        for field, digest in (("split_options", "split_digest"), ("settings", "config_digest")):
            if len({getattr(b, digest) for b in twins}) > 1:
                keys = _differing([dict(getattr(b, field)) for b in twins])
                mine = dict(getattr(a, field))
                tags.append(",".join(_short(k, mine.get(k)) for k in keys) or f"{digest.split('_')[0]}:{(getattr(a, digest) or 'na')[:6]}")
        labels[a] = name(a, shown, dash=True, extra=tuple(tags))
    seen: dict[str, int] = defaultdict(int)
    for a in agents:  # a last resort that keeps labels unique
        seen[labels[a]] += 1
        if seen[labels[a]] > 1:
            labels[a] = f"{labels[a]}#{seen[labels[a]]}"
    return labels


def _prefer(candidates: list[Agent], agent: Agent) -> list[Agent]:
    """Narrow ``candidates`` to those of ``agent``'s study, then to those acting as it does, where any are."""
    for same in (lambda b: b.study == agent.study, lambda b: b.deterministic == agent.deterministic):
        narrowed = [b for b in candidates if same(b)]
        candidates = narrowed or candidates
    return candidates


def baselines(agent: Agent, others: Iterable[Agent]) -> list[Agent]:
    """What ``agent`` is compared with: BC on the same dataset recipe (for other offline agents), and the
    online agents (PPO...; for every non-online agent), scored on the same held-out levels the same way
    (normalized or raw) after training on the same split, final policies only; among several, those of the same study, then those acting in
    the same mode (greedy or sampled), are preferred. BCQ and CQL act greedily whatever the evaluation
    asked, so they are compared with sampling BC and PPO when nothing else is there."""
    online = available_algorithms("online")  # PPO, the JAX PPO, and any online algorithm registered
    has_data = agent.dataset_skill is not None or agent.dataset_transitions is not None
    recipe = (agent.dataset_skill, agent.dataset_levels, agent.dataset_transitions, agent.train_levels)
    comparable = [b for b in others if b != agent and b.checkpoint is None and b.normalized == agent.normalized
                  and (agent.split_digest is None or b.split_digest is None or b.split_digest == agent.split_digest)]  # fmt: skip
    bc = [b for b in comparable if b.algorithm == "bc" and agent.algorithm != "bc" and has_data
          and (b.dataset_skill, b.dataset_levels, b.dataset_transitions, b.train_levels) == recipe]  # fmt: skip
    ppo = [b for b in comparable if b.algorithm in online and agent.algorithm not in online]
    return _prefer(bc, agent) + _prefer(ppo, agent)
