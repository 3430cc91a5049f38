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

import numpy as np

from rlgen.data.dataset import Dataset
from rlgen.data.format import DatasetError, decode_shard, inside
from rlgen.data.writer import DatasetWriter, Episode
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
        path = inside(base.root, entry["file"], base.root / "manifest.json", "shard file")
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


def export_minari(ds: Dataset, dataset_id: str, progress: bool = False) -> Path:
    """Write ``ds`` as the local Minari dataset ``dataset_id`` (e.g. ``rlgen/coinrun/expert-v0``).
    Returns the Minari dataset's directory. ``progress``: a bar over the episodes written (``rlgen.progress``;
    silent when stdout is not a terminal), advanced per chunk of ``_CHUNK_EPISODES``."""
    import gymnasium as gym
    import minari

    if dataset_id in minari.list_local_datasets():
        raise DatasetError(f"Minari dataset {dataset_id!r} already exists; pick another id or delete it with `minari delete {dataset_id}`")
    obs_space = gym.spaces.Box(0, 255, shape=ds.observation_shape, dtype=np.dtype(ds.manifest["observation_space"].get("dtype", "uint8")))
    act_space = gym.spaces.Discrete(ds.num_actions)
    ref = _reference_scores(ds)
    chunks = _buffers(ds)
    first = next(chunks)
    bar = ProgressBar(f"[bold]export[/] {ds.name} -> {dataset_id}", total=ds.num_episodes, unit="episodes", enabled=progress)
    with bar, warnings.catch_warnings():  # Minari warns that no gymnasium env spec was given: rlgen envs are not registered there
        warnings.simplefilter("ignore", UserWarning)
        mds = minari.create_dataset_from_buffers(
            dataset_id, first, observation_space=obs_space, action_space=act_space, algorithm_name=f"rlgen {ds.manifest.get('skill', 'subset')}",
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
    Levels come from ``infos["level"]`` when present, else the episode id.

    A truncated or structurally damaged HDF5 file is refused in one line; Minari stores no data checksums,
    so a flipped byte inside an array cannot be detected here (rlgen's own shards carry checksums).
    ``progress``: a bar over the episodes read (silent when stdout is not a terminal)."""
    import gymnasium as gym
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
    env = env or meta.get("rlgen_env")
    if not env:
        raise DatasetError(f"{dataset_id} was not exported by rlgen: say which env it holds with --env SUITE/ENV")
    manifest = {"env": env, "skill": meta.get("skill") or "imported", "observation_space": {"shape": list(obs_space.shape), "dtype": "uint8"},
                "action_space": {"n": int(act_space.n)}, "policies": [{"label": meta.get("skill") or "imported"}],
                "source": {"minari": dataset_id}}  # fmt: skip
    if meta.get("split"):
        manifest["split"] = meta["split"]
    bar = ProgressBar(f"[bold]import[/] {dataset_id}", total=int(mds.total_episodes), unit="episodes", enabled=progress)
    with bar, DatasetWriter(out, manifest, shard_transitions) as w:
        try:
            for ep in mds.iterate_episodes():
                levels = (ep.infos or {}).get("level")
                level = int(np.asarray(levels)[0]) if levels is not None and len(levels) else int(ep.id)
                w.add(Episode(np.asarray(ep.observations), np.asarray(ep.actions, np.int64), np.asarray(ep.rewards, np.float32),
                              np.asarray(ep.terminations, bool), np.asarray(ep.truncations, bool), level=level, policy=manifest["skill"]))  # fmt: skip
                bar.update(advance=1)
        except _READ_ERRORS as e:  # no manifest is written: the directory holds no dataset
            raise DatasetError(f"Minari dataset {dataset_id!r} ({where}): an episode cannot be read, the file is truncated or corrupt: "
                               f"{_first_line(e)}") from None  # fmt: skip
    return out


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
