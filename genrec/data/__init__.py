"""genrec.data: datasets of user interaction sequences, the item catalog and leave-one-out splits.

    from genrec.data import load_dataset, leave_one_out
    data = load_dataset("amazon-beauty")      # bundled; or a folder / file path
    split = leave_one_out(data)
    windows = split.train_windows(max_history=50)
"""

from genrec.data.catalog import DEFAULT_TEXT_FIELDS, ItemCatalog
from genrec.data.interactions import (
    InteractionData,
    consecutive_id_rate,
    kcore_filter,
    sequence_length_stats,
)
from genrec.data.registry import (
    bundled_datasets,
    detect_format,
    has_item_text,
    load_dataset,
    resolve_dataset_path,
)
from genrec.data.splits import LeaveOneOutSplit, leave_one_out, sliding_windows

__all__ = [
    "DEFAULT_TEXT_FIELDS",
    "InteractionData",
    "ItemCatalog",
    "LeaveOneOutSplit",
    "bundled_datasets",
    "consecutive_id_rate",
    "detect_format",
    "has_item_text",
    "kcore_filter",
    "leave_one_out",
    "load_dataset",
    "resolve_dataset_path",
    "sequence_length_stats",
    "sliding_windows",
]
