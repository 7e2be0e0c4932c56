"""``zactor.data``: Ray Data's API — datasets of Arrow blocks, read, transformed and
written by tasks and actors as a stream, on zactor's public core API only.

Example::

    import zactor
    ds = zactor.data.range(1_000).map_batches(lambda b: {"square": b["id"] ** 2})
    print(ds.sum("square"))
"""

from zactor.data._read import (
    from_arrow,
    from_items,
    from_numpy,
    from_pandas,
    range,  # noqa: A004 - Ray's name
    range_tensor,
    read_binary_files,
    read_csv,
    read_json,
    read_numpy,
    read_parquet,
    read_text,
)
from zactor.data.context import DataContext
from zactor.data.dataset import (
    ActorPoolStrategy,
    Dataset,
    GroupedData,
    MaterializedDataset,
    TaskPoolStrategy,
)
from zactor.data.iterator import DataIterator

__all__ = ["ActorPoolStrategy", "DataContext", "DataIterator", "Dataset", "GroupedData",
           "MaterializedDataset", "TaskPoolStrategy", "from_arrow", "from_items",
           "from_numpy", "from_pandas", "range", "range_tensor", "read_binary_files",
           "read_csv", "read_json", "read_numpy", "read_parquet", "read_text"]
