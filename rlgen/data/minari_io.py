"""Minari export and import, so rlgen datasets work with the rest of the Farama ecosystem.

Export is lossless: Minari JPEG-encodes image observations by default, which rlgen turns off. Each
episode's level goes into ``infos["level"]`` (one entry per observation) and its policy label into
the episode metadata. Minari writes to ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.data.dataset import Dataset
from rlgen.data.format import DatasetError, decode_shard, inside, shard_file
from rlgen.data.writer import DatasetWriter, Episode
from rlgen.envs.gymnasium_ids import rlgen_env_of_spec
from rlgen.progress import ProgressBar

#: Episodes handed to Minari per call, so export never holds more than about a shard in RAM.
_CHUNK_EPISODES = 256


def _buffers(ds: Dataset) -> Any:
    """Minari ``EpisodeBuffer``s of ``ds``'s episodes, shard by shard, in chunks."""
    from minari.data_collector import EpisodeBuffer

    base = ds.base
    chosen = set(ds.episodes["id"].tolist())
    chunk: list[Any] = []
    for entry in base.manifest["shards"]:
        rows = base.episodes[base.episodes["shard"] == entry["file"]]
        rows = rows[np.argsort(rows["offset"])]
        if not chosen.intersection(rows["id"].tolist()):
            continue
        path = inside(base.root, shard_file(entry), base.root / "manifest.json", "shard file")
        arrays, lengths = decode_shard(path, sha256=entry["sha256"], frame_checksum=int(base.manifest.get("schema_version", 1)) >= 2)
        s = o = 0
        for row, t in zip(rows, lengths):
            t = int(t)
            if int(row["id"]) in chosen:
                chunk.append(EpisodeBuffer(
                    id=None, observations=arrays["obs"][o : o + t + 1], actions=arrays["actions"][s : s + t],
                    rewards=list(arrays["rewards"][s : s + t]), terminations=list(arrays["terminated"][s : s + t]),
                    truncations=list(arrays["truncated"][s : s + t]), infos={"level": np.full(t + 1, int(row["level"]), np.int64)},
                ))  # fmt: skip
                if len(chunk) >= _CHUNK_EPISODES:
                    yield chunk
                    chunk = []
            s, o = s + t, o + t + 1
    if chunk:
        yield chunk


def _reference_scores(ds: Dataset) -> tuple[float, float] | None:
    """Procgen's (R_min, R_max) normalization range, so Minari's normalized score matches rlgen's."""
    suite, env = ds.env.split("/", 1)
    if suite != "procgen":
        return None
    from rlgen.envs.procgen import return_range

    mode = (ds.manifest.get("split") or {}).get("options", {}).get("distribution_mode", "easy")
    return return_range(env, mode)


def _env_spec(ds: Dataset) -> Any:
    """The Gymnasium ``EnvSpec`` of the dataset's training levels (``rlgen.envs.gymnasium_ids.env_spec_of``), so
    Minari's ``recover_environment()`` gives an env on them; None when the manifest has no split or its suite
    cannot make the env here (Minari makes it once to check the spec)."""
    from rlgen.envs import LevelSplit
    from rlgen.envs.gymnasium_ids import env_spec_of

    split = ds.manifest.get("split")
    if not isinstance(split, dict):
        return None
    try:
        spec = env_spec_of(LevelSplit.from_dict(split), "train")
        gym.make(spec).close()
    except Exception:  # noqa: BLE001 - an env that cannot be made here (suite not installed): export without a spec
        return None
    return spec


def export_minari(ds: Dataset, dataset_id: str, progress: bool = False) -> Path:
    """Write ``ds`` as the local Minari dataset ``dataset_id`` (e.g. ``rlgen/coinrun/expert-v0``), with the env
    spec of its training levels (``_env_spec``: ``minari.load_dataset(id).recover_environment()`` works).
    Returns the Minari dataset's directory. ``progress``: a bar over the episodes written (``rlgen.progress``;
    silent when stdout is not a terminal), advanced per chunk of ``_CHUNK_EPISODES``."""
    import minari

    if dataset_id in minari.list_local_datasets():
        raise DatasetError(f"Minari dataset {dataset_id!r} already exists; pick another id or delete it with `minari delete {dataset_id}`")
    obs_space = gym.spaces.Box(0, 255, shape=ds.observation_shape, dtype=np.dtype(ds.manifest["observation_space"].get("dtype", "uint8")))
    act_space = gym.spaces.Discrete(ds.num_actions)
    ref = _reference_scores(ds)
    chunks = _buffers(ds)
    first = next(chunks)
    bar = ProgressBar(f"[bold]export[/] {ds.name} -> {dataset_id}", total=ds.num_episodes, unit="episodes", enabled=progress)
    spec = _env_spec(ds)
    with bar, warnings.catch_warnings():  # without an env spec (a dataset without its split) Minari warns that none was given
        warnings.simplefilter("ignore", UserWarning)
        mds = minari.create_dataset_from_buffers(
            dataset_id, first, env=spec, observation_space=obs_space, action_space=act_space, algorithm_name=f"rlgen {ds.manifest.get('skill', 'subset')}",
            description=json.dumps({"rlgen_env": ds.env, "rlgen_dataset": ds.name, "skill": ds.manifest.get("skill"), "split": ds.manifest.get("split")}),
            ref_min_score=ref[0] if ref else None, ref_max_score=ref[1] if ref else None, jpeg_encoding=False,
        )  # fmt: skip
        bar.update(advance=len(first))
        for chunk in chunks:
            mds.storage.update_episodes(chunk)
            bar.update(advance=len(chunk))
    return Path(mds.storage.data_path).parent


def import_minari(dataset_id: str, out: str | Path, env: str | None = None, shard_transitions: int = 50_000, progress: bool = False) -> Path:
    """Copy the local Minari dataset ``dataset_id`` (uint8 image observations, discrete actions) into
    an rlgen dataset at ``out``. ``env`` (``SUITE/ENV``) is needed unless the dataset came from rlgen.
    Without ``env`` and rlgen's description, the env comes from the dataset's env spec (rlgen's Gymnasium ids, or a
    MiniGrid id, as a Minari ``DataCollector`` records it). Levels come from ``infos["level"]`` when present, else
    from each episode's reset seed when Minari recorded it and the spec says what it means (a MiniGrid id: the
    seed is the level; an rlgen id: the level that seed's reset starts), else the episode id.

    A truncated or structurally damaged HDF5 file is refused in one line; Minari stores no data checksums,
    so a flipped byte inside an array cannot be detected here (rlgen's own shards carry checksums).
    ``progress``: a bar over the episodes read (silent when stdout is not a terminal)."""
    import minari

    if dataset_id not in minari.list_local_datasets():
        raise DatasetError(f"no local Minari dataset {dataset_id!r}; local ones: {', '.join(sorted(minari.list_local_datasets())) or 'none'}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; give a directory for the imported dataset")
    where = _minari_path(dataset_id)
    try:
        mds = minari.load_dataset(dataset_id)
    except _READ_ERRORS as e:
        raise DatasetError(f"Minari dataset {dataset_id!r} ({where}) cannot be read, it is truncated or corrupt: {_first_line(e)}") from None
    obs_space, act_space = mds.observation_space, mds.action_space
    if not (isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and isinstance(act_space, gym.spaces.Discrete)):
        raise DatasetError(f"{dataset_id}: rlgen reads uint8 image observations and discrete actions; it has {obs_space} and {act_space}")
    meta: dict[str, Any] = {}
    try:
        meta = json.loads(mds.storage.metadata.get("description") or "{}")
    except (json.JSONDecodeError, TypeError):
        pass
    spec = _dataset_env_spec(mds)
    env = env or meta.get("rlgen_env") or rlgen_env_of_spec(spec)
    if not env:
        raise DatasetError(f"{dataset_id} was not exported by rlgen and its env spec ({getattr(spec, 'id', None)}) names no rlgen env: "
                           "say which env it holds with --env SUITE/ENV")  # fmt: skip
    level_of_seed = _level_of_seed(spec) if rlgen_env_of_spec(spec) == env else None
    manifest = {"env": env, "skill": meta.get("skill") or "imported", "observation_space": {"shape": list(obs_space.shape), "dtype": "uint8"},
                "action_space": {"n": int(act_space.n)}, "policies": [{"label": meta.get("skill") or "imported"}],
                "source": {"minari": dataset_id}}  # fmt: skip
    if meta.get("split"):
        manifest["split"] = meta["split"]
    bar = ProgressBar(f"[bold]import[/] {dataset_id}", total=int(mds.total_episodes), unit="episodes", enabled=progress)
    with bar, DatasetWriter(out, manifest, shard_transitions) as w:
        try:
            seeds = [m.get("seed") for m in mds.storage.get_episode_metadata(mds.episode_indices)] if level_of_seed else []
            for i, ep in enumerate(mds.iterate_episodes()):
                levels = (ep.infos or {}).get("level")
                if levels is not None and len(levels):
                    level = int(np.asarray(levels)[0])
                elif level_of_seed is not None and i < len(seeds) and seeds[i] is not None:
                    level = level_of_seed(int(seeds[i]), int(ep.id))
                else:
                    level = int(ep.id)
                w.add(Episode(np.asarray(ep.observations), np.asarray(ep.actions, np.int64), np.asarray(ep.rewards, np.float32),
                              np.asarray(ep.terminations, bool), np.asarray(ep.truncations, bool), level=level, policy=manifest["skill"]))  # fmt: skip
                bar.update(advance=1)
        except _READ_ERRORS as e:  # no manifest is written: the directory holds no dataset
            raise DatasetError(f"Minari dataset {dataset_id!r} ({where}): an episode cannot be read, the file is truncated or corrupt: "
                               f"{_first_line(e)}") from None  # fmt: skip
    return out


def _dataset_env_spec(mds: Any) -> Any:
    """The dataset's recorded Gymnasium ``EnvSpec`` (None when it has none or it cannot be read)."""
    try:
        return mds.spec.env_spec
    except Exception:  # noqa: BLE001 - Minari rebuilds it from JSON; an unreadable one is as good as none here
        return None


def _level_of_seed(spec: Any) -> Any:
    """``(seed, episode) -> level`` for episodes reset with ``seed`` on ``spec``'s env: the seed itself for a MiniGrid
    id (its reset seed is rlgen's level), the level an rlgen id's env starts after ``reset(seed=seed)``."""
    from rlgen.envs import LEVEL_ID_LIMIT

    if str(spec.id).startswith("MiniGrid-"):
        def seed_level(seed: int, episode: int) -> int:
            if not 0 <= seed < LEVEL_ID_LIMIT:
                raise DatasetError(f"episode {episode} was reset with seed {seed}, which is no level id (0..{LEVEL_ID_LIMIT - 1}): "
                                   "collect with reset(seed=level), or pass --env to number levels by episode")  # fmt: skip
            return seed

        return seed_level
    env = gym.make(spec)

    def started_level(seed: int, episode: int) -> int:
        return int(env.reset(seed=seed)[1]["level"])

    return started_level


#: What h5py and Minari raise on a damaged file (h5py: OSError, KeyError; Minari's metadata: ValueError).
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


def _minari_path(dataset_id: str) -> str:
    try:
        from minari.storage import get_dataset_path

        return str(get_dataset_path(dataset_id))
    except Exception:  # noqa: BLE001 - only for the message
        return "$MINARI_DATASETS_PATH"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
