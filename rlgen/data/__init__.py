"""Offline datasets: the format, writing, reading and sampling, collection, Minari import/export.

    from rlgen.data import load_dataset
    ds = load_dataset("data/coinrun-expert-1M")
    batch = ds.subset(levels=50, transitions=200_000, seed=0).sample_transitions(256)
"""

from rlgen.data.dataset import Dataset, load_dataset
from rlgen.data.format import DatasetError
from rlgen.data.writer import DatasetWriter, Episode, write_dataset

__all__ = ["Dataset", "DatasetError", "DatasetWriter", "Episode", "load_dataset", "write_dataset"]
