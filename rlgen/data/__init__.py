"""Offline datasets, storage only: the format, writing, reading, the cache, sampling, Minari import/export.

    from rlgen.data import load_dataset
    ds = load_dataset("data/coinrun-expert-1M")
    batch = ds.subset(levels=50, transitions=200_000, seed=0).sample_transitions(256)

Imports nothing of rlgen but ``envs``, ``errors`` and the atomic file writes; collection (rollouts
into datasets) is ``rlgen.collect``.
"""

from rlgen.data.dataset import Dataset, load_dataset
from rlgen.data.identity import dataset_identity
from rlgen.data.writer import DatasetWriter, Episode, write_dataset
from rlgen.errors import DatasetError

__all__ = ["Dataset", "DatasetError", "DatasetWriter", "Episode", "dataset_identity", "load_dataset", "write_dataset"]
