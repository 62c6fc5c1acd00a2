"""Data for the inner training: bundled, generated, or read from local files."""

from ganno_bench.data.dataset import ArrayDataset, Corruption
from ganno_bench.data.sources import DATA_SOURCES, load_dataset

__all__ = ["DATA_SOURCES", "ArrayDataset", "Corruption", "load_dataset"]
