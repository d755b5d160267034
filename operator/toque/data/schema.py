"""Tabular schema inference for the CSV and Parquet files of a dataset.

Each column gets its pandas dtype and a kind, "numeric" or "categorical", which is what the
drift engine needs to pick its tests (KS/PSI vs chi-square). Parquet schemas and row counts
come from the file footer without reading the data; CSV files are read whole by pandas so
the dtype reflects every row, not the first block. Called by ``toque.data.transfer`` in
the hashing workers during a push.
"""

from __future__ import annotations

import logging
import pathlib
from typing import TYPE_CHECKING, Any, Literal

from toque.data import manifest

if TYPE_CHECKING:
    import pandas

# pandas and pyarrow are imported where used: together they cost a second of start-up to
# every `toque` command, and most pushes hold no table at all.

log = logging.getLogger(__name__)

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


def is_tabular(path: str) -> bool:
    suffix = pathlib.PurePosixPath(path).suffix.lower()
    return suffix in CSV_SUFFIXES or suffix in PARQUET_SUFFIXES


def kind_of(dtype: Any) -> Literal["numeric", "categorical"]:
    import pandas.api.types

    # Booleans are numbers to numpy but categories to a drift test.
    if pandas.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pandas.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "categorical"


def columns_of(frame: pandas.DataFrame) -> tuple[manifest.Column, ...]:
    return tuple(
        manifest.Column(name=str(name), dtype=str(dtype), kind=kind_of(dtype))
        for name, dtype in frame.dtypes.items()
    )


def infer(source: pathlib.Path, path: str) -> manifest.Table | None:
    """The schema of a CSV or Parquet file, or None (with a warning) if it cannot be read.

    An unreadable table does not stop a push: its bytes are still stored and verified.
    """
    suffix = pathlib.PurePosixPath(path).suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet

            parquet = pyarrow.parquet.ParquetFile(source)
            rows = int(parquet.metadata.num_rows)
            # An empty table converted by pyarrow gives the dtypes pandas would read.
            frame = parquet.schema_arrow.empty_table().to_pandas()
        elif suffix in CSV_SUFFIXES:
            import pandas

            frame = pandas.read_csv(source, low_memory=False)
            rows = len(frame)
        else:
            return None
    except Exception as exc:  # pandas and pyarrow raise many unrelated types
        log.warning("%s: no schema recorded, not a readable table (%s)", path, exc)
        return None
    return manifest.Table(path=path, rows=rows, columns=columns_of(frame))
