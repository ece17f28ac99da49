"""Engine compatibility: every work-around for a Sail 0.7.2 bug, in one place.

The jobs are engine-neutral PySpark and must give the same answers on Sail and on Apache Spark.
Where Sail answers differently, the portable spelling lives here, one small function per bug,
each valid (and a no-op or an equivalent) on Spark. ``tests/pipeline/test_compat.py`` shows each
bug still happening on Sail (a "canary": when it fails after an engine upgrade, the bug is fixed)
and each work-around giving Spark's answer. An upgrade that fixes a bug deletes its function here
and its call sites, nothing else.

Known and handled:

- ``weekday()`` returns -1 for Sundays (Spark: 6)                          -> :func:`iso_dayofweek`
- ``stddev_samp`` over a sliding window of equal values is NaN or a small
  non-zero number (its running sums retract values; Spark answers 0.0)      -> :func:`window_stddev`
- the ``binaryFile`` source returns a file twice now and then, given more
  than ~100 paths or a few folders                                          -> :func:`distinct_files`

Known, and nothing here needs a work-around:

- ``percentile_approx`` interpolates between values (Spark returns a value of the data): the code
  uses ``median`` / ``percentile``, which interpolate on both engines. Do not use ``percentile_approx``.
- ``DataFrame.cache()`` is a no-op (each action runs the whole plan again) and join hints are
  ignored: nothing relies on them (silver runs its cheap plan once per output table).
- A join with a small driver-side frame is a hash join that shuffles the large side: silver
  tests the repeated domains with ``IN`` lists of literals (``silver.repeated_counts``).
- A regular expression is compiled for every batch, and a ``binaryFile`` read yields a batch per
  file: bronze takes the key out of a path with ``substring_index``.
- ``replaceWhere`` does not check its predicate: the lake uses ``MERGE INTO`` / ``DELETE FROM``.
- ``input_file_name()`` and ``_metadata.file_path`` are missing: bronze reads ``binaryFile``,
  whose ``path`` column carries the file name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, WindowSpec


def iso_dayofweek(date_col: str | Column) -> Column:
    """ISO day of week, Monday = 1 .. Sunday = 7.

    Sail 0.7.2's ``weekday()`` returns -1 for Sundays instead of 6, so the ISO day is computed from
    ``dayofweek()`` (Sunday = 1 .. Saturday = 7), which both engines get right.
    """
    return (F.dayofweek(date_col) + 5) % 7 + 1


def window_stddev(column: str | Column, window: WindowSpec) -> Column:
    """Sample standard deviation of ``column`` over ``window``: NULL below two values, 0.0 when
    every value of the frame is equal.

    Sail 0.7.2 computes a sliding ``stddev_samp`` from running sums that values leave again, so a
    frame of equal values after a different one comes out NaN (a tiny negative variance) or a small
    non-zero number, where Spark answers 0.0. Equal values are detected exactly (min = max) and
    answered with 0.0; anything Sail still leaves NaN becomes 0.0 too.
    """
    values = F.col(column) if isinstance(column, str) else column
    count = F.count(values).over(window)
    constant = F.max(values).over(window) == F.min(values).over(window)
    return (
        F.when(count < 2, F.lit(None).cast("double"))
        .when(constant, F.lit(0.0))
        .otherwise(F.nanvl(F.stddev_samp(values).over(window), F.lit(0.0)))
    )


def distinct_files(files: DataFrame) -> DataFrame:
    """The rows of a ``binaryFile`` read with each ``path`` once.

    Sail 0.7.2's ``binaryFile`` source returns one file twice now and then when it is given more
    than ~100 paths, or folders (a year read by month folders without this: 3,485 lines too many).
    A file is one row, so dropping repeated paths is exact (and a no-op on Spark).
    """
    return files.dropDuplicates(["path"])
