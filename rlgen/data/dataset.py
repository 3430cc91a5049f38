"""Reading datasets: ``load_dataset``, subsets, verification and the out-of-core sampler.

Sampling never holds the dataset in Python objects. The first ``sample_*`` call decompresses the
shards once into a memory-mapped cache (``<dataset>/cache/``: flat ``.npy`` arrays, one row per
observation or transition; see ``rlgen.data.cache``) and batches are gathered from it with vectorized
indexing. The cache is checked when it is opened and rebuilt when it is stale or damaged.
``to_device("cuda")`` copies the arrays to the GPU when they fit, and batches are then gathered there.

Trust: ``load_dataset`` checks the manifest (structure, ``content_sha256``), the sha256 of
``episodes.jsonl``, that every shard path stays inside the dataset and that every episode row names a
shard of the manifest. A subset's ``parent`` may lie anywhere, but must be a full dataset (not a subset,
not a bare directory); reading the subset writes nothing but the parent's own cache, under its lock,
exactly as reading the parent would.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rlgen.data.cache import CACHE_DIR, check_cache, cache_key, open_checked
from rlgen.data.format import (
    EPISODES,
    MANIFEST,
    SCHEMA_VERSION,
    DatasetError,
    decode_shard,
    inside,
    read_manifest,
    sha256_of,
    with_digest,
    write_json_atomic,
    write_jsonl_atomic,
)

_EPISODE_DTYPE = np.dtype([("id", "i8"), ("level", "i8"), ("return", "f8"), ("length", "i8"), ("policy", "U32"), ("shard", "U64"), ("offset", "i8")])


def _read_episode_table(root: Path, manifest: dict[str, Any]) -> tuple[np.ndarray, str]:
    """``(table, sha256 of the file)``; the sha256 must match the manifest's ``episodes_sha256`` when it has one."""
    path = root / EPISODES
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"dataset {str(root)!r} has no {EPISODES}") from None
    digest = hashlib.sha256(data).hexdigest()
    if "episodes_sha256" in manifest and digest != manifest["episodes_sha256"]:
        raise DatasetError(f"{path}: sha256 differs from the manifest's episodes_sha256 (the file changed or is corrupt)")
    rows = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            r = json.loads(line)
            rows.append((r["id"], r["level"], r["return"], r["length"], r.get("policy", ""), r["shard"], r["offset"]))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DatasetError(f"{path} line {n} is not a valid episode row: {e}") from None
    try:
        table = np.array(rows, dtype=_EPISODE_DTYPE)
    except (ValueError, TypeError, OverflowError) as e:
        raise DatasetError(f"{path}: an episode row has a value of the wrong type ({e})") from None
    if len(table) and ((table["length"] < 1).any() or (table["id"] < 0).any() or (table["offset"] < 0).any()):
        raise DatasetError(f"{path}: episode rows need length >= 1, id >= 0 and offset >= 0")
    if len(np.unique(table["id"])) != len(table):
        raise DatasetError(f"{path}: episode ids repeat")
    return table, digest


def load_dataset(path: str | Path, expect_env: str | None = None) -> "Dataset":
    """Open the dataset (or saved subset) at ``path``.

    Args:
        path: a dataset directory (``rlgen collect``'s ``out_dir``).
        expect_env: when given, the dataset must hold data of this env (``SUITE/ENV``).

    Raises:
        DatasetError: no dataset there, an unreadable manifest, or another env's data.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{str(root)!r} is a file, not a dataset directory")
    manifest = read_manifest(root)
    if manifest.get("kind") == "subset":
        parent_path = (root / manifest["parent"]).resolve()
        try:
            parent = load_dataset(parent_path)
        except DatasetError as e:
            raise DatasetError(f"subset {str(root)!r} points at {str(parent_path)!r}, which cannot be read: {e}") from None
        if parent.manifest.get("kind", "dataset") != "dataset":
            raise DatasetError(f"{root / MANIFEST}: parent {manifest['parent']!r} is itself a subset; a subset's parent must be a full dataset")
        table, _ = _read_episode_table(root, manifest)
        ids = table["id"]
        known = np.isin(ids, parent.episodes["id"])
        if not known.all():
            raise DatasetError(f"subset {str(root)!r} lists episodes {ids[~known][:5].tolist()} that its parent does not have")
        ds = Dataset(root, manifest, parent.episodes[np.isin(parent.episodes["id"], ids)], parent)
    else:
        table, digest = _read_episode_table(root, manifest)
        source = root / MANIFEST
        files = {e["file"] for e in manifest["shards"]}
        for e in manifest["shards"]:
            inside(root, e["file"], source, "shard file")
        if not np.array_equal(np.sort(table["id"]), np.arange(len(table))):  # the cache indexes episodes by id
            raise DatasetError(f"{root / EPISODES}: a dataset's episode ids must be 0..{len(table) - 1}, each once")
        stray = sorted(set(table["shard"].tolist()) - files)
        if stray:
            raise DatasetError(f"{root / EPISODES}: episodes name shard {stray[0]!r}, which {MANIFEST} does not list")
        ds = Dataset(root, manifest, table, None)
        ds._episodes_sha256 = digest
    if expect_env is not None and ds.env != expect_env:
        raise DatasetError(f"dataset {str(root)!r} holds {ds.env} data, but the config's env is {expect_env}")
    return ds


class Dataset:
    """A dataset, or a view of one (``subset``): its manifest, its episode table and a sampler.

    Attributes:
        root: the directory it was loaded from (for a view: its parent's).
        manifest: the parsed ``manifest.json``.
        episodes: structured array, one row per episode of this view: ``id``, ``level``,
            ``return``, ``length``, ``policy``, ``shard``, ``offset``.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], episodes: np.ndarray, parent: "Dataset | None") -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.episodes = episodes
        # The dataset whose shards and cache hold the data: the root of a chain of views.
        self._base: Dataset = parent._base if parent is not None else self
        self._arrays: dict[str, Any] | None = None
        self._index: dict[str, Any] | None = None
        self._device: str | None = None
        self._rng = np.random.default_rng(0)
        self._episodes_sha256 = ""
        if len(episodes) == 0:
            raise DatasetError(f"dataset {str(root)!r} has no episodes")

    # --- facts -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def env(self) -> str:
        return str(self.manifest["env"])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_transitions(self) -> int:
        return int(self.episodes["length"].sum())

    @property
    def levels(self) -> np.ndarray:
        """The distinct levels of this dataset's episodes, sorted."""
        return np.unique(self.episodes["level"])

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.manifest["observation_space"]["shape"])

    @property
    def num_actions(self) -> int:
        return int(self.manifest["action_space"]["n"])

    @property
    def split(self) -> Any:
        """The ``LevelSplit`` the data was collected on, or None when the manifest has none."""
        from rlgen.envs import LevelSplit

        return LevelSplit.from_dict(self.manifest["split"]) if "split" in self.manifest else None

    def describe(self) -> dict[str, Any]:
        """Summary for ``rlgen datasets info``: counts, returns per policy label, storage cost."""
        by_skill = {}
        for label in sorted(set(self.episodes["policy"].tolist())):
            sel = self.episodes[self.episodes["policy"] == label]
            by_skill[label or "-"] = {"episodes": len(sel), "mean_return": float(sel["return"].mean())}
        obs_bytes = int(np.prod(self.observation_shape)) * np.dtype(self.manifest["observation_space"].get("dtype", "uint8")).itemsize
        stored = self._base.manifest.get("counts", {}).get("bytes")
        base_transitions = self._base.num_transitions
        return {
            "name": self.name,
            "env": self.env,
            "episodes": self.num_episodes,
            "transitions": self.num_transitions,
            "levels": len(self.levels),
            "mean_return": float(self.episodes["return"].mean()),
            "returns_by_skill": by_skill,
            "bytes_per_transition": stored / base_transitions if stored else None,
            "raw_bytes_per_transition": obs_bytes,
        }

    # --- subsets ---------------------------------------------------------------------------------
    def subset(
        self,
        levels: int | Sequence[int] | None = None,
        transitions: int | None = None,
        episodes: int | None = None,
        skill: str | Sequence[str] | None = None,
        seed: int = 0,
    ) -> "Dataset":
        """A view on some of the episodes; nothing is copied.

        Args:
            levels: keep episodes of this many levels drawn at random (diversity), or of these levels.
            transitions: then keep random whole episodes until at least this many transitions (size).
            episodes: or keep this many random episodes.
            skill: keep episodes of these policy labels (``expert``, ``medium``...).
            seed: makes the draw reproducible.

        Episodes are drawn uniformly at random, never by return (the reference study's loader kept
        the highest-return episodes, which biases small subsets toward expert data).
        """
        if transitions is not None and episodes is not None:
            raise DatasetError("give transitions or episodes, not both")
        rng = np.random.default_rng(seed)
        table = self.episodes
        if skill is not None:
            labels = [skill] if isinstance(skill, str) else list(skill)
            have = sorted(set(table["policy"].tolist()))
            missing = [s for s in labels if s not in have]
            if missing:
                raise DatasetError(f"skill {missing[0]!r} is not in {self.name}; it has: {', '.join(have)}")
            table = table[np.isin(table["policy"], labels)]
        if levels is not None:
            available = np.unique(table["level"])
            if isinstance(levels, (int, np.integer)):
                if not 1 <= levels <= len(available):
                    raise DatasetError(f"levels={levels}: {self.name} has episodes on {len(available)} levels")
                chosen = rng.choice(available, size=int(levels), replace=False)
            else:
                chosen = np.asarray(list(levels), dtype=np.int64)
                absent = chosen[~np.isin(chosen, available)]
                if len(absent):
                    raise DatasetError(f"levels {absent[:5].tolist()} have no episodes in {self.name}")
            table = table[np.isin(table["level"], chosen)]
        if transitions is not None or episodes is not None:
            order = rng.permutation(len(table))
            if episodes is not None:
                if episodes > len(table):
                    raise DatasetError(f"episodes={episodes:,}: only {len(table):,} episodes to choose from in {self.name}")
                keep = order[:episodes]
            else:
                total = np.cumsum(table["length"][order])
                if transitions > total[-1]:
                    raise DatasetError(f"transitions={transitions:,}: only {int(total[-1]):,} transitions to choose from in {self.name}")
                keep = order[: int(np.searchsorted(total, transitions)) + 1]
            table = table[np.sort(keep)]
        spec = {"levels": levels if levels is None or isinstance(levels, (int, np.integer)) else list(map(int, levels)),
                "transitions": transitions, "episodes": episodes, "skill": skill, "seed": seed}  # fmt: skip
        manifest = {**self.manifest, "kind": "subset", "subset": spec}
        return Dataset(self.root, manifest, table, self)

    def save_subset(self, path: str | Path) -> Path:
        """Save this view as a named dataset: a manifest pointing at the parent's shards, no data copied."""
        out = Path(path)
        if out.exists() and not out.is_dir():
            raise DatasetError(f"{out} is a file; give a directory for the subset")
        if (out / MANIFEST).exists():
            raise DatasetError(f"{out} already holds a dataset")
        out.mkdir(parents=True, exist_ok=True)
        rows = [{"id": int(e["id"]), "level": int(e["level"]), "return": float(e["return"]), "length": int(e["length"]),
                 "policy": str(e["policy"]), "shard": str(e["shard"]), "offset": int(e["offset"])} for e in self.episodes]  # fmt: skip
        write_jsonl_atomic(out / EPISODES, rows)
        manifest = {k: v for k, v in self.manifest.items() if k not in ("shards", "counts", "episodes_sha256", "content_sha256")}
        manifest.update({
            "schema_version": SCHEMA_VERSION, "kind": "subset", "name": out.name,
            "parent": os.path.relpath(self._base.root.resolve(), out.resolve()),
            "counts": {"episodes": self.num_episodes, "transitions": self.num_transitions, "levels": len(self.levels)},
            "episodes_sha256": hashlib.sha256((out / EPISODES).read_bytes()).hexdigest(),
        })  # fmt: skip
        write_json_atomic(out / MANIFEST, with_digest(manifest))
        return out

    # --- integrity -------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Check every shard this dataset uses (present, sha256 as in the manifest, zstd frame checksum,
        decodable, holding the episodes, lengths, returns, observation shapes and action range the index
        says) and the cache when there is one (every file's size, header and sha256 as recorded when it
        was built). ``load_dataset`` has checked the manifest and ``episodes.jsonl`` already. Returns the
        problems found (empty when all is well)."""
        base = self._base
        problems: list[str] = []
        counts = base.manifest.get("counts", {})
        if counts.get("episodes") != base.num_episodes or counts.get("transitions") != base.num_transitions:
            problems.append(f"manifest counts {counts.get('episodes')} episodes / {counts.get('transitions')} transitions, "
                            f"{EPISODES} has {base.num_episodes} / {base.num_transitions}")  # fmt: skip
        shape = list(self.observation_shape)
        used = set(self.episodes["shard"].tolist())
        frame_checksum = int(base.manifest.get("schema_version", 1)) >= 2
        for entry in base.manifest["shards"]:
            if entry["file"] not in used:
                continue
            path = inside(base.root, entry["file"], base.root / MANIFEST, "shard file")
            if not path.is_file():
                problems.append(f"{entry['file']}: missing")
                continue
            if sha256_of(path) != entry["sha256"]:
                problems.append(f"{entry['file']}: sha256 differs from the manifest (the file changed or is corrupt)")
                continue
            try:
                arrays, lengths = decode_shard(path, frame_checksum=frame_checksum)
            except DatasetError as e:
                problems.append(str(e))
                continue
            rows = base.episodes[base.episodes["shard"] == entry["file"]]
            rows = rows[np.argsort(rows["offset"])]
            if len(rows) != len(lengths) or not np.array_equal(rows["length"], lengths):
                problems.append(f"{entry['file']}: holds {len(lengths)} episodes of lengths that differ from {EPISODES}")
            if list(arrays["obs"].shape[1:]) != shape or len(arrays["obs"]) != int(lengths.sum() + len(lengths)):
                problems.append(f"{entry['file']}: observations {list(arrays['obs'].shape)}, expected (*, {shape}) with one per step plus one per episode")
            actions = arrays["actions"]
            if len(actions) and (actions.min() < 0 or actions.max() >= self.num_actions):
                problems.append(f"{entry['file']}: actions in [{actions.min()}, {actions.max()}], the action space has {self.num_actions}")
            returns = np.add.reduceat(arrays["rewards"].astype(np.float64), np.concatenate([[0], np.cumsum(lengths)[:-1]])) if len(lengths) else []
            if len(rows) == len(lengths) and not np.allclose(returns, rows["return"], atol=1e-4):
                problems.append(f"{entry['file']}: episode returns differ from {EPISODES}")
        state, cache_problems = check_cache(base.root / CACHE_DIR, base._cache_key())
        if state == "corrupt":  # absent or stale caches are (re)built on first use; a corrupt one is rebuilt too
            problems += [f"cache: {p} (rebuilt from the shards on next use)" for p in cache_problems]
        return problems

    # --- the memory-mapped cache -------------------------------------------------------------------
    def _cache_key(self) -> dict[str, Any]:
        return cache_key(self._base.manifest, self._base._episodes_sha256)

    def cache(self) -> Path:
        """Build (once), check and open the memory-mapped cache of the underlying dataset. Returns its path.

        Raises:
            DatasetError: building it found a shard missing, changed or corrupt (named).
        """
        base = self._base
        if base._arrays is None:
            base._arrays = open_checked(base.root, base.manifest, base.episodes, base._cache_key(), build=base._build_cache)
        return base.root / CACHE_DIR

    def cached_arrays(self) -> dict[str, Any]:
        """The underlying dataset's flat arrays (memory-mapped, or on the device after ``to_device``):
        ``obs`` ``(sum(T_i + 1), *obs_shape)``; per step ``actions``, ``rewards``, ``terminated``,
        ``truncated``, ``returns_to_go``, ``timesteps`` and ``obs_of_step`` (the row of ``obs``
        seen at that step); ``ep_step_start[id]``, the first step row of episode ``id``."""
        self.cache()
        assert self._base._arrays is not None
        return self._base._arrays

    def _build_cache(self, path: Path, key: dict[str, Any]) -> None:
        """Build the cache at ``path`` (``rlgen.data.cache.build_cache``); called with the cache lock held."""
        from rlgen.data.cache import build_cache

        build_cache(self.root, self.manifest, self.episodes, path, key)

    def _step_index(self) -> dict[str, Any]:
        """Cache rows of this view's steps (``steps``) and, per step, its episode's first row."""
        if self._index is None:
            self.cache()
            a = self._base._arrays
            assert a is not None
            starts = np.asarray(a["ep_step_start"])[self.episodes["id"]]
            lengths = self.episodes["length"]
            offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            steps = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
            self._index = {"steps": steps}
        return self._index

    def to_device(self, device: str) -> bool:
        """Copy the cache's arrays to ``device`` (e.g. ``"cuda"``) when they fit in its free memory,
        so batches are gathered there. Returns whether it did; otherwise sampling stays on the host."""
        import torch

        self.cache()
        base = self._base
        assert base._arrays is not None
        need = sum(a.nbytes for a in base._arrays.values())
        if str(device).startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            if need > 0.5 * free:
                return False
        moved = {}
        for k, v in base._arrays.items():
            t = torch.empty(v.shape, dtype=torch.from_numpy(np.zeros(0, v.dtype)).dtype, device=device)
            step = max(1, (256 << 20) // max(1, v[:1].nbytes))  # ~256 MB at a time: never a second full copy in host RAM
            for i in range(0, len(v), step):
                t[i : i + step] = torch.from_numpy(np.array(v[i : i + step]))
            moved[k] = t
        base._arrays = moved
        base._device = str(device)
        return True

    def _gather(self, name: str, rows: np.ndarray) -> Any:
        a = self._base._arrays
        assert a is not None
        if self._base._device is not None:
            import torch

            return a[name][torch.as_tensor(rows, device=self._base._device)]
        return a[name][rows]

    def _host(self, x: Any) -> np.ndarray:
        return x.cpu().numpy() if self._base._device is not None else np.asarray(x)

    # --- sampling ----------------------------------------------------------------------------------
    def sample_transitions(self, batch_size: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """A batch of transitions drawn uniformly with replacement.

        Returns:
            ``obs`` and ``next_obs`` ``(B, *obs_shape)``, ``action`` ``(B,)`` int64, ``reward`` ``(B,)``
            float32, ``done`` ``(B,)`` bool (terminated: no bootstrapping), ``truncated`` ``(B,)`` bool.
            numpy arrays, or tensors on the device after ``to_device``.
        """
        steps = self._step_index()["steps"]
        rows = np.sort(steps[(rng or self._rng).integers(0, len(steps), size=int(batch_size))])
        obs_rows = self._host(self._gather("obs_of_step", rows))
        return {
            "obs": self._gather("obs", obs_rows),
            "action": self._gather("actions", rows),
            "reward": self._gather("rewards", rows),
            "next_obs": self._gather("obs", obs_rows + 1),
            "done": self._gather("terminated", rows),
            "truncated": self._gather("truncated", rows),
        }

    def sample_windows(self, batch_size: int, length: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """A batch of trajectory windows of ``length`` steps, each ending at a uniformly drawn step
        and reaching back at most to its episode's start; shorter windows are left-padded.

        Returns:
            ``obs`` ``(B, L, *obs_shape)``, ``actions`` ``(B, L)`` int64, ``rewards`` ``(B, L)`` float32,
            ``returns_to_go`` ``(B, L)`` float32 (sum of this and later rewards of the episode),
            ``timesteps`` ``(B, L)`` int64 (step index in the episode), ``mask`` ``(B, L)`` bool
            (False on padding, where every other array is zero).
        """
        steps = self._step_index()["steps"]
        a = self._base._arrays
        assert a is not None
        end = steps[(rng or self._rng).integers(0, len(steps), size=int(batch_size))]
        t_end = self._host(self._gather("timesteps", end))
        back = np.arange(length - 1, -1, -1)  # (L,): how far before the end each column is
        mask = back[None, :] <= t_end[:, None]  # (B, L)
        rows = np.where(mask, end[:, None] - back[None, :], end[:, None])  # padding reads the end row, then is zeroed
        flat = rows.ravel()
        order = np.argsort(flat, kind="stable")  # memory-mapped reads are faster in file order
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        sorted_rows = flat[order]

        if self._base._device is not None:
            import torch

            inverse = torch.as_tensor(inverse, device=self._base._device)

        def take(name: str, index: np.ndarray) -> Any:
            x = self._gather(name, index)[inverse]
            return x.reshape(len(end), length, *x.shape[1:])

        obs_rows = self._host(self._gather("obs_of_step", sorted_rows))
        out = {
            "obs": take("obs", obs_rows),
            "actions": take("actions", sorted_rows),
            "rewards": take("rewards", sorted_rows),
            "returns_to_go": take("returns_to_go", sorted_rows),
            "timesteps": take("timesteps", sorted_rows),
        }
        if self._base._device is not None:
            import torch

            m = torch.as_tensor(mask, device=self._base._device)
            for k, v in out.items():
                out[k] = v * m.view(*m.shape, *([1] * (v.dim() - 2))).to(v.dtype)
            out["mask"] = m
        else:
            for k, v in out.items():
                v = np.asarray(v)
                out[k] = v * mask.reshape(*mask.shape, *([1] * (v.ndim - 2))).astype(v.dtype)
            out["mask"] = mask
        return out

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, env={self.env}, episodes={self.num_episodes:,}, transitions={self.num_transitions:,}, levels={len(self.levels)})"
