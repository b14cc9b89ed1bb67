"""Datasets as in-memory tensors, by name. See `load_data`."""

from cnnlab.data.batches import augment, batches, epoch_order, num_batches, parse_augment
from cnnlab.data.dataset import Dataset, Split
from cnnlab.data.registry import DataOptions, dataset_entries, load_data

__all__ = [
    "DataOptions",
    "Dataset",
    "Split",
    "augment",
    "batches",
    "dataset_entries",
    "epoch_order",
    "load_data",
    "num_batches",
    "parse_augment",
]
