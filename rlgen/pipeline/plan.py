"""Expand a study into stages: one per PPO run, dataset, subset, offline agent, evaluation, report.

Each stage has a deterministic directory under the study's ``out_dir`` and a content hash of its
resolved config together with the hashes of the stages it depends on, so an edited config changes
the hash of that stage and of everything downstream, and nothing else::

    ppo/<env>[-<N>lv]-s<seed>/              rlgen train run directory of the online algorithm (ppo.algo; -<N>lv: ppo.levels)
    data/<env>-<skill>[-<N>lv]-<size>-s<seed>/   rlgen collect dataset (or a saved subset)
    offline/<dataset>/<algo>-s<seed>/       rlgen train (offline) run directory
    offline/<dataset>/<algo>-s<s1>_<s2>.../ a seed group (algorithms whose schema has `seeds`): members seed_<s>/
    eval/<agent path>/results.jsonl         evaluation rows of one agent
    report/                                 rlgen report of all evaluations

No stage directory lies inside another, so recomputing one never touches another's files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlgen.agents import schema_for_algo
from rlgen.config import CollectConfig, RlgenConfig, config_to_dict, human_count, merge, read_yaml, validate_config
from rlgen.errors import ConfigError, RlgenError
from rlgen.pipeline.study import TEMPLATE_FIELDS, Resources, StageSection, StudyConfig

#: Bump when a stage kind's meaning changes, so old outputs are recomputed.
PIPELINE_VERSION = 1
#: Keys that change how a stage runs but not what it computes: left out of the hash.
VOLATILE_KEYS = ("progress", "device")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One unit of work.

    Attributes:
        id: unique, also the directory relative to the study's out_dir (``ppo/coinrun-s0``).
        kind: ``ppo`` (the online algorithm, ``ppo.algo``), ``collect``, ``subset``, ``offline``, ``evaluate``,
            ``report``, or ``external`` (an existing online run reused as is: never executed).
        dir: the output directory.
        config: the resolved stage config (plain JSON data).
        deps: ids of the stages whose outputs this one reads.
        hash: sha256 of kind, config (without ``VOLATILE_KEYS``) and the deps' hashes.
        num_cpus, num_gpus: resources for one run of this stage.
        study: the study's name; a training stage records it in the ``run.json`` of the run it creates
            (the run's study label in every row of it). Not part of the hash: renaming a study retrains nothing.
    """

    id: str
    kind: str
    dir: str
    config: dict[str, Any]
    deps: tuple[str, ...]
    hash: str
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    study: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Stage":
        return cls(**{**data, "deps": tuple(data["deps"])})


def stage_hash(kind: str, config: Mapping[str, Any], dep_hashes: list[str], root: str | Path | None = None) -> str:
    """sha256 of what a stage computes. Paths under the study's ``root`` count relative to it, so a
    study directory that is moved, or named as a relative or an absolute path, keeps its hashes."""
    stable = {k: v for k, v in config.items() if k not in VOLATILE_KEYS}
    if root is not None:
        stable = _relative_paths(stable, str(root))
    blob = json.dumps({"version": PIPELINE_VERSION, "kind": kind, "config": stable, "deps": dep_hashes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _relative_paths(value: Any, root: str) -> Any:
    if isinstance(value, str):
        if value == root:
            return "{out_dir}"
        return "{out_dir}/" + value[len(root) + 1 :] if value.startswith(root + "/") else value
    if isinstance(value, Mapping):
        return {k: _relative_paths(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_relative_paths(v, root) for v in value]
    return value


def env_slug(env: str) -> str:
    """``procgen/coinrun`` -> ``coinrun``; ``minigrid/MiniGrid-DoorKey-6x6-v0`` -> ``doorkey-6x6``."""
    name = env.split("/", 1)[1]
    if name.startswith("MiniGrid-"):
        name = name.removeprefix("MiniGrid-").rpartition("-v")[0] or name
    return name.lower()


class _Planner:
    def __init__(self, study: StudyConfig, source: str) -> None:
        self.study = study
        self.source = source
        self.root = Path(study.out_dir)  # set by the validator (default runs/<name>)
        self.stages: dict[str, Stage] = {}

    # --- helpers ---------------------------------------------------------------------------------
    def add(self, kind: str, sid: str, config: dict[str, Any], deps: list[str], directory: Path | None = None) -> Stage:
        if sid in self.stages:  # pragma: no cover - ids are built from unique sweep values
            raise RlgenError(f"two stages with the id {sid!r}")
        res: Resources = self.study.resources_for(kind)
        digest = stage_hash(kind, config, [self.stages[d].hash for d in deps], self.root)
        stage = Stage(sid, kind, str(directory or self.root / sid), config, tuple(deps), digest, num_cpus=res.num_cpus, num_gpus=res.num_gpus,
                      study=self.study.name)  # fmt: skip
        self.stages[sid] = stage
        return stage

    def template(self, text: str, key: str, **fields: Any) -> str:
        try:
            return text.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            allowed = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            raise ConfigError(f"{self.source}: key `{key}` = {text!r}: cannot fill in {e}; allowed fields: {allowed}") from None

    def stage_config(self, section: StageSection, key: str, schema: type[RlgenConfig], decided: dict[str, Any], fields: dict[str, Any],
                     extra: Mapping[str, Any] | None = None, extra_key: str = "") -> RlgenConfig:  # fmt: skip
        """Base file, then the keys the study decides, then ``set`` (and ``extra``); validated."""
        base: dict[str, Any] = {}
        where = f"`{key}.set`"
        if section.config:
            path = self.template(section.config, f"{key}.config", **fields)
            try:
                base = read_yaml(path)
            except ConfigError as e:
                raise ConfigError(f"{self.source}: key `{key}.config`: {e}") from None
            where = f"{path} + `{key}.set`"
        for overrides, name in ((section.set, f"{key}.set"), (extra or {}, extra_key)):
            clash = sorted(set(overrides) & set(decided))
            if clash:
                by = _DECIDED_BY.get(clash[0], "the stage layout")
                raise ConfigError(f"{self.source}: key `{name}.{clash[0]}` is decided by the study ({by}); remove it")
        # the study's device wins over the base file's; `set` (and per-algorithm settings) win over both
        data = merge(merge(merge(merge(base, {"device": self.study.device}), decided), section.set), extra or {})
        if extra:
            where += f" + `{extra_key}`"
        label = f"{self.source}: {key} stage for {fields['suite']}/{fields['env']} seed {fields['seed']}"
        label += f" algo {fields['algo']}" if "algo" in fields else ""
        return validate_config(data, schema, source=f"{label} ({where})")

    def split_data(self) -> dict[str, Any]:
        return self.study.split.model_dump()

    # --- stages ----------------------------------------------------------------------------------
    def plan(self) -> list[Stage]:
        s = self.study
        evals: list[str] = []
        for env in s.envs:
            suite = env.split("/", 1)[0]
            slug = env_slug(env)
            base_fields = {"suite": suite, "env": slug, "game": slug}
            self._check_split(env)
            ppo = self._ppo(env, slug, base_fields) if s.ppo is not None else {}
            if s.ppo is not None and s.evaluation.ppo:
                for (_, levels), stage in ppo.items():  # a PPO of ppo.levels N: "train" is its N levels
                    evals.append(self._evaluate("ppo", stage, env, label=s.ppo.algo, first_levels=levels).id)
            datasets = self._datasets(env, slug, base_fields, ppo) if s.datasets is not None else []
            if s.offline is not None:
                for stage, variant in self._offline(env, base_fields, datasets):
                    evals.append(self._evaluate("offline", stage, env, label=variant["label"], first_levels=variant["levels"],
                                                member=variant["member"]).id)  # fmt: skip
            if s.evaluation.random_baseline:
                evals.append(self._evaluate("random", None, env, label="random", sid=f"eval/random/{slug}").id)
        if s.report.enabled and evals:
            results = [{"file": str(Path(self.stages[e].dir) / "results.jsonl"), "stage_hash": self.stages[e].hash} for e in evals]
            self.add("report", "report", {"results": results, "seed": s.report.seed}, evals)
        return list(self.stages.values())

    def _check_split(self, env: str) -> Any:
        """The env's LevelSplit (without the duplicate check, which runs in the stages)."""
        cfg = validate_config({"env": env, "split": self.split_data()}, RlgenConfig, source=f"{self.source}: split for {env}")
        split = cfg.level_split(check_duplicates=False)
        d = self.study.datasets
        for key, values in (("datasets.levels", d.levels if d is not None else []), ("ppo.levels", self.study.ppo.levels if self.study.ppo else [])):
            too_many = [n for n in values if n is not None and n > len(split.train)]
            if too_many:
                raise ConfigError(f"{self.source}: key `{key}` = {too_many[0]}: {env} has only {len(split.train)} training levels in this split")
            if None in values and len(split.train) in values:  # the same level set twice: two stages, two rows of one label
                raise ConfigError(f"{self.source}: key `{key}` lists {len(split.train)} and null, both all {len(split.train)} training levels of "
                                  f"{env}; keep one of them")  # fmt: skip
        return split

    def _ppo_split(self, env: str, levels: int | None) -> dict[str, Any]:
        """The split a PPO of ``ppo.levels`` N trains under: the study's, its training levels narrowed to the first
        N, its validation and held-out levels named explicitly (a split's default held-out levels follow its
        number of training levels; these must not)."""
        if levels is None:
            return self.split_data()
        split = self._check_split(env)
        full = split.to_dict()
        return {**self.split_data(), "num_levels": None, "train": str(split.train.first(levels)),
                "validation": full["validation"] or None, "held_out": full["held_out"]}  # fmt: skip

    def _ppo(self, env: str, slug: str, base_fields: dict[str, Any]) -> dict[tuple[int, int | None], Stage]:
        """(seed, ppo.levels N) -> the PPO stage (N None: all training levels)."""
        s = self.study
        assert s.ppo is not None
        out: dict[tuple[int, int | None], Stage] = {}
        for seed in s.stage_seeds(s.ppo):
            fields = {**base_fields, "seed": seed}
            if s.ppo.reuse:
                path = Path(self.template(s.ppo.reuse, "ppo.reuse", **fields))
                out[(seed, None)] = self._external(path, env, seed)
                continue
            for levels in s.ppo.levels:
                name = f"{slug}" + (f"-{levels}lv" if levels else "") + f"-s{seed}"
                sid = f"ppo/{name}"
                decided = {"algo": s.ppo.algo, "name": f"ppo-{name}", "out_dir": str(self.root / sid), "env": env,
                           "split": self._ppo_split(env, levels), "seed": seed}  # fmt: skip
                cfg = self.stage_config(s.ppo, "ppo", schema_for_algo(s.ppo.algo), decided, fields)
                out[(seed, levels)] = self.add("ppo", sid, config_to_dict(cfg), [])
        return out

    def _external(self, path: Path, env: str, seed: int) -> Stage:
        """An existing PPO run used as is; its hash follows its ladder.json, so a retrained run
        recomputes everything downstream."""
        ladder = path / "ladder.json"
        if not ladder.is_file():
            raise ConfigError(f"{self.source}: key `ppo.reuse`: {str(path)!r} is not a finished PPO run (no ladder.json); train it with `rlgen train` or drop ppo.reuse")
        from rlgen.agents.run_dir import read_ladder

        data = read_ladder(path)  # a torn or malformed ladder is one line naming it
        theirs = data.get("split", {})
        from rlgen.envs import LevelSet, LevelSplit

        ours = self._check_split(env)
        if theirs and (LevelSplit.from_dict(theirs).id != ours.id or LevelSet(theirs["train"]) != ours.train):
            raise ConfigError(f"{self.source}: key `ppo.reuse`: {path} trained {theirs.get('suite')}/{theirs.get('env')} on levels {theirs.get('train')}, "
                              f"but the study uses {ours.id} with training levels {ours.train}; make `split` match the run or train a new one")  # fmt: skip
        digest = hashlib.sha256(ladder.read_bytes()).hexdigest()
        return self.add("external", f"external/{env_slug(env)}-s{seed}", {"path": str(path), "ladder_sha256": digest, "env": env}, [], directory=path)

    def _datasets(self, env: str, slug: str, base_fields: dict[str, Any], ppo: dict[tuple[int, int | None], Stage]) -> list[tuple[Stage, dict[str, Any]]]:
        s = self.study
        d = s.datasets
        assert d is not None
        out = []
        ppo_seeds = list(dict.fromkeys(seed for seed, _ in ppo))
        # with ppo.levels, the levels axis is the PPO's: the data of N levels comes from the PPO trained on them
        by_ppo = s.ppo is not None and s.ppo.levels != [None]
        for seed in s.stage_seeds(d):
            fields = {**base_fields, "seed": seed}
            for skill in d.skills:
                for levels in (s.ppo.levels if by_ppo and s.ppo is not None else d.levels):
                    key = levels if by_ppo else None
                    policy = ppo.get((seed, key)) or (ppo[(ppo_seeds[0], key)] if ppo_seeds else None)
                    # the largest kept size is collected; smaller kept sizes are subsets of it (subset_sizes)
                    sizes = sorted((n for n in d.transitions if d.keeps(skill, levels, n)), reverse=True)
                    collected: Stage | None = None
                    for size in sizes:
                        name = f"{slug}-{skill}" + (f"-{levels}lv" if levels else "") + f"-{human_count(size)}-s{seed}"
                        sid = f"data/{name}"
                        variant = {"skill": skill, "levels": levels, "transitions": size, "seed": seed, "name": name}
                        if collected is not None and d.subset_sizes:
                            # a seeded random subset of whole episodes of the largest collection
                            stage = self.add("subset", sid, {"parent": collected.dir, "transitions": size, "seed": seed}, [collected.id])
                        else:
                            decided: dict[str, Any] = {"name": name, "out_dir": str(self.root / sid), "env": env, "split": self.split_data(), "seed": seed,
                                                       "skill": skill, "transitions": size, "episodes": None, "levels": levels,
                                                       "policy_run": policy.dir if (policy is not None and skill != "random") else None}  # fmt: skip
                            cfg = self.stage_config(d, "datasets", CollectConfig, decided, fields)
                            deps = [policy.id] if (policy is not None and skill != "random") else []
                            stage = collected = self.add("collect", sid, config_to_dict(cfg), deps)
                        out.append((stage, variant))
        return out

    def _offline(self, env: str, base_fields: dict[str, Any], datasets: list[tuple[Stage, dict[str, Any]]]) -> list[tuple[Stage, dict[str, Any]]]:
        s = self.study
        o = s.offline
        assert o is not None and s.datasets is not None
        data_seeds = s.stage_seeds(s.datasets)
        several_skills = len(s.datasets.skills) > 1
        seeds = s.stage_seeds(o)
        data_seed_of = {seed: seed if seed in data_seeds else data_seeds[0] for seed in seeds}
        out = []
        for seed in seeds:
            data_seed = data_seed_of[seed]
            # an algorithm whose schema has `seeds` (the JAX agents) trains the seeds that share a dataset as one
            # seed group, one stage, its first seed's turn; each member is its own run (<dir>/seed_<s>/)
            group = [x for x in seeds if data_seed_of[x] == data_seed]
            for ds_stage, variant in datasets:
                if variant["seed"] != data_seed:
                    continue
                for algo in s.datasets.algos_for(variant["skill"], variant["levels"], variant["transitions"], o.algos):
                    schema = schema_for_algo(algo)
                    grouped = "seeds" in schema.model_fields
                    if grouped and seed != group[0]:
                        continue
                    members = group if grouped else [seed]
                    tag = "_".join(str(x) for x in members)
                    sid = f"offline/{variant['name']}/{algo}-s{tag}"
                    fields = {**base_fields, "seed": seed, "algo": algo}
                    decided = {"algo": algo, "name": f"{algo}-{variant['name']}-s{tag}", "out_dir": str(self.root / sid), "env": env,
                               "split": self.split_data(), "seed": seed, "dataset": ds_stage.dir, **({"seeds": members} if grouped else {})}  # fmt: skip
                    cfg = self.stage_config(o, "offline", schema, decided, fields, extra=o.per_algo.get(algo), extra_key=f"offline.per_algo.{algo}")
                    stage = self.add("offline", sid, config_to_dict(cfg), [ds_stage.id])
                    label = f"{algo}-{variant['skill']}" if several_skills else algo
                    for m in members:
                        out.append((stage, {"seed": m, "label": label, "levels": variant["levels"], "member": m if grouped else None}))
        return out

    def _evaluate(self, agent: str, source: Stage | None, env: str, label: str, first_levels: int | None = None, sid: str | None = None,
                  member: int | None = None) -> Stage:  # fmt: skip
        """The evaluation of ``source``'s run (``member``: seed ``member`` of its seed group)."""
        e = self.study.evaluation
        run_dir = source.dir if source is not None else None
        if sid is None:
            assert source is not None
            sid = f"eval/{'ppo' if agent == 'ppo' else 'offline'}/{source.id.split('/', 1)[1]}"
            if member is not None:  # eval/offline/<dataset>/<algo>-s<seed>, as for an algorithm trained seed by seed
                sid = f"{sid.rpartition('-s')[0]}-s{member}"
                run_dir = str(Path(source.dir) / f"seed_{member}")
        config = {
            "agent": agent, "run_dir": run_dir, "env": env, "split": self.split_data(),
            "first_levels": first_levels, "which": list(e.which), "episodes": e.episodes, "seed": e.seed, "num_envs": e.num_envs,
            "deterministic": e.deterministic, "device": self.study.device,
            # what the agent is (run id, algorithm, dataset, seed) its evaluation reads from the run
            # directory, as `rlgen evaluate` does; the study adds its name and the label it prints
            "row": {"agent": label, "study": self.study.name},
        }  # fmt: skip
        return self.add("evaluate", sid, config, [source.id] if source is not None else [])


_DECIDED_BY = {
    "env": "`envs`", "split": "`split`", "seed": "`seeds`", "name": "the stage layout", "out_dir": "`out_dir` and the stage layout",
    "algo": "`ppo.algo` and `offline.algos`", "dataset": "`datasets`", "policy_run": "`ppo`", "skill": "`datasets.skills`",
    "transitions": "`datasets.transitions`", "episodes": "`datasets.transitions`", "levels": "`datasets.levels`",
    "seeds": "`offline.seeds` or `seeds`: the seeds that share a dataset train as one seed group",
}  # fmt: skip


def plan_study(study: StudyConfig, source: str = "study") -> list[Stage]:
    """All stages of ``study`` in an order where every stage comes after its dependencies.

    Raises:
        ConfigError: a stage config is invalid (one line naming the study key and the bad value).
    """
    return _Planner(study, source).plan()
