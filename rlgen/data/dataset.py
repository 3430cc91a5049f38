"""Reading datasets: ``load_dataset``, the episode index, subsets (views), the cache; sampling (``rlgen.data.sampler``)
and verification (``rlgen.data.verify``) are delegated.

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

from rlgen.atomic_files import write_json_atomic, write_jsonl_atomic
from rlgen.data.cache import CACHE_DIR, cache_key, open_checked
from rlgen.data.format import EPISODES, MANIFEST, SCHEMA_VERSION, DatasetError, inside, manifest_digest, read_manifest, shard_file, with_digest
from rlgen.data.sampler import CacheArrays, copy_to_device, sample_transitions, sample_windows

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


#: Manifest key: the digests (``parent_digest``) the manifest had before ``rlgen datasets compact`` rewrote it, which
#: subsets saved before then recorded (compaction changes shard sha256s, never an episode).
COMPACTED_FROM = "compacted_from"


def parent_digest(manifest: dict[str, Any]) -> str:
    """The digest a subset records of its parent: the parent manifest's ``content_sha256`` (schema 1
    manifests have none: their canonical digest), which covers its shards' and ``episodes.jsonl``'s sha256."""
    return str(manifest.get("content_sha256") or manifest_digest(manifest))


def _check_subset_parent(root: Path, manifest: dict[str, Any], table: np.ndarray, parent: "Dataset") -> None:
    """A saved subset names its episodes by id; ids mean nothing once the parent is collected again, so the
    subset must still describe its parent: the parent digest it recorded, and its own rows equal to the parent's.

    Raises:
        DatasetError: one line naming the subset and what changed.
    """
    recorded = manifest.get("parent_content_sha256")
    earlier = parent.manifest.get(COMPACTED_FROM)  # `rlgen datasets compact` re-encoded shards, no episode changed
    if recorded is not None and recorded != parent_digest(parent.manifest) and recorded not in (earlier if isinstance(earlier, list) else []):
        raise DatasetError(f"subset {str(root)!r} was saved from another version of its parent {manifest['parent']!r} (parent digest "
                           f"{str(recorded)[:12]}..., now {parent_digest(parent.manifest)[:12]}...): the parent was collected again "
                           "or changed; save the subset again from the parent as it is")  # fmt: skip
    ids = table["id"]
    known = np.isin(ids, parent.episodes["id"])
    if not known.all():
        raise DatasetError(f"subset {str(root)!r} lists episodes {ids[~known][:5].tolist()} that its parent does not have")
    row_of = np.empty(len(parent.episodes), dtype=np.int64)  # a full dataset's ids are 0..n-1 (load_dataset checks)
    row_of[parent.episodes["id"]] = np.arange(len(parent.episodes))
    theirs = parent.episodes[row_of[ids]]
    for column in ("level", "length", "policy", "shard", "offset", "return"):
        differ = ~np.isclose(theirs[column], table[column], atol=1e-6) if column == "return" else theirs[column] != table[column]
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            raise DatasetError(f"subset {str(root)!r}: episode {int(ids[i])} has {column} {table[column][i].item()!r} in the subset but "
                               f"{theirs[column][i].item()!r} in its parent {manifest['parent']!r}; the parent changed since the subset "
                               "was saved: save the subset again")  # fmt: skip


#: What ``rlgen datasets compact`` changes in a manifest (``_RECODED`` in each shard entry); the rest stays.
_COMPACTION_CHANGES = {"shards", "counts", "schema_version", COMPACTED_FROM, "content_sha256"}
_RECODED = {"stored_as", "sha256", "bytes", "codec"}


def _only_recoded(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether ``after`` differs from ``before`` only as a compaction makes it: the same shard entries (the same
    ``file``, episodes and transitions each) re-encoded, every other key equal."""
    def rest(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in _COMPACTION_CHANGES}

    def kept(shards: Any) -> list[dict[str, Any]] | None:
        return [{k: v for k, v in e.items() if k not in _RECODED} for e in shards] if isinstance(shards, list) else None

    return rest(before) == rest(after) and kept(before.get("shards")) == kept(after.get("shards"))


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
        _check_subset_parent(root, manifest, table, parent)
        ds = Dataset(root, manifest, parent.episodes[np.isin(parent.episodes["id"], table["id"])], parent)
    else:
        table, digest = _read_episode_table(root, manifest)
        source = root / MANIFEST
        files = {e["file"] for e in manifest["shards"]}
        for e in manifest["shards"]:
            inside(root, shard_file(e), source, "shard file")
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
        self._source: CacheArrays | None = None  # set by cache(): the arrays sampling reads
        self._steps: np.ndarray | None = None
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
            "parent_content_sha256": parent_digest(self._base.manifest),
            "counts": {"episodes": self.num_episodes, "transitions": self.num_transitions, "levels": len(self.levels)},
            "episodes_sha256": hashlib.sha256((out / EPISODES).read_bytes()).hexdigest(),
            **subset_return_statistics(rows, self.manifest),
        })  # fmt: skip
        write_json_atomic(out / MANIFEST, with_digest(manifest))
        return out

    # --- integrity -------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """The problems ``rlgen.data.verify.verify_dataset`` finds in this dataset (empty when all is well)."""
        from rlgen.data.verify import verify_dataset

        return verify_dataset(self)

    # --- the memory-mapped cache -------------------------------------------------------------------
    @property
    def base(self) -> "Dataset":
        """The full dataset whose shards and cache hold this view's data (itself for a full dataset)."""
        return self._base

    def cache_key(self) -> dict[str, Any]:
        """What the underlying dataset's cache is built from (``rlgen.data.cache.cache_key``)."""
        base = self._base
        return cache_key(base.manifest, base._episodes_sha256, base.num_episodes, base.num_transitions)

    def cache(self) -> Path:
        """Build (once), check and open the memory-mapped cache of the underlying dataset. Returns its path.

        Raises:
            DatasetError: building it found a shard missing, changed or corrupt (named).
        """
        base = self._base
        if base._source is None:
            base._adopt_compaction()
            base._source = CacheArrays(open_checked(base.root, base.manifest, base.episodes, base.cache_key(), build=base._build_cache))
        return base.root / CACHE_DIR

    def _adopt_compaction(self) -> bool:
        """Take the manifest on disk when ``rlgen datasets compact`` finished after this dataset was opened: it
        re-encoded the shards into new files (the old ones are gone) and kept every array and ``episodes.jsonl``,
        so its shard entries are the ones to read. Only a manifest that records this one as compacted from is
        taken; anything else is left for the cache check to name. Returns whether the manifest changed."""
        try:
            disk = read_manifest(self.root)
        except DatasetError:
            return False
        mine = parent_digest(self.manifest)
        earlier = disk.get(COMPACTED_FROM)
        if parent_digest(disk) == mine or not isinstance(earlier, list) or mine not in earlier:
            return False
        if disk.get("episodes_sha256") != self.manifest.get("episodes_sha256"):
            return False
        if not _only_recoded(self.manifest, disk):  # compaction re-encodes shards and nothing else: other edits are not adopted
            return False
        for e in disk["shards"]:
            inside(self.root, shard_file(e), self.root / MANIFEST, "shard file")
        self.manifest = disk
        return True

    def cached_arrays(self) -> dict[str, Any]:
        """The underlying dataset's flat arrays (memory-mapped, or on the device after ``to_device``):
        ``obs`` ``(sum(T_i + 1), *obs_shape)``; per step ``actions``, ``rewards``, ``terminated``,
        ``truncated``, ``returns_to_go``, ``timesteps`` and ``obs_of_step`` (the row of ``obs``
        seen at that step); ``ep_step_start[id]``, the first step row of episode ``id``."""
        self.cache()
        assert self._base._source is not None
        return self._base._source.arrays

    def _build_cache(self, path: Path, key: dict[str, Any]) -> None:
        """Build the cache at ``path`` (``rlgen.data.cache.build_cache``); called with the cache lock held."""
        from rlgen.data.cache import build_cache

        if self._adopt_compaction():  # compacted between the check and the lock: build from the new files, under their key
            key = self.cache_key()
        build_cache(self.root, self.manifest, self.episodes, path, key)

    def _step_index(self) -> np.ndarray:
        """The cache's step rows of this view's steps, in episode order."""
        if self._steps is None:
            self.cache()
            assert self._base._source is not None
            starts = self._base._source.host(self._base._source.arrays["ep_step_start"])[self.episodes["id"]]
            lengths = self.episodes["length"]
            offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            self._steps = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
        return self._steps

    def to_device(self, device: str) -> bool:
        """Copy the cache's arrays to ``device`` (e.g. ``"cuda"``) when they fit in its free memory,
        so batches are gathered there. Returns whether it did; otherwise sampling stays on the host."""
        self.cache()
        moved = copy_to_device(self._base._source, device)
        if moved is not None:
            self._base._source = moved
        return moved is not None

    # --- sampling ----------------------------------------------------------------------------------
    def sample_transitions(self, batch_size: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """A batch of transitions drawn uniformly with replacement (``rlgen.data.sampler.sample_transitions``:
        ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``, ``truncated``)."""
        steps = self._step_index()
        return sample_transitions(self._base._source, steps, batch_size, rng or self._rng)

    def sample_windows(self, batch_size: int, length: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """A batch of trajectory windows of ``length`` steps (``rlgen.data.sampler.sample_windows``: ``obs``,
        ``actions``, ``rewards``, ``returns_to_go``, ``timesteps``, ``terminated``, ``truncated``, ``mask``)."""
        steps = self._step_index()
        return sample_windows(self._base._source, steps, batch_size, length, rng or self._rng)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, env={self.env}, episodes={self.num_episodes:,}, transitions={self.num_transitions:,}, levels={len(self.levels)})"


def subset_return_statistics(rows: Sequence[dict[str, Any]], parent: dict[str, Any]) -> dict[str, Any]:
    """The return statistics of a subset's own episodes (``rows``: episodes.jsonl rows), in the keys a collected
    manifest has (``mean_return``, ``returns_by_policy``, ``return_vs_expert``), so that a subset never repeats its
    parent's figures as its own. ``return_vs_expert`` keeps the parent's expert return only when the subset holds
    no expert episode, and says so."""
    if not rows:
        return {}
    returns = [float(r["return"]) for r in rows]
    by_policy: dict[str, dict[str, Any]] = {}
    for label in sorted({str(r["policy"]) for r in rows}):
        sel = [float(r["return"]) for r in rows if str(r["policy"]) == label]
        by_policy[label] = {"episodes": len(sel), "mean_return": float(np.mean(sel))}
    out: dict[str, Any] = {"mean_return": float(np.mean(returns)), "returns_by_policy": by_policy}
    old = parent.get("return_vs_expert")
    if isinstance(old, dict):
        mean = out["mean_return"]
        if "expert" in by_policy:
            expert, source = by_policy["expert"]["mean_return"], f"the {by_policy['expert']['episodes']} expert episodes of this subset"
        else:
            expert, source = old.get("expert_return"), f"the parent dataset's figure ({old.get('expert_return_from', 'unknown')})"
        fraction = mean / expert if isinstance(expert, (int, float)) and expert > 0 else None
        out["return_vs_expert"] = {**old, "mean_return": mean, "expert_return": expert, "expert_return_from": source, "fraction": fraction}
    return out

