"""Batch scoring: every domain on every complete day, with the production model, into ``gold_churn_scores``.

The rows are the feature rows the API scores (``gold_churn_features`` on days with all their hourly
files, exactly what ``wikichurn features export`` puts in the serving snapshot), and the model comes
from the same registry loader as ``wikichurn serve``. The job is column-wise, never per row:

- the unscored days' feature rows are read once, as one Arrow table (``DataFrame.toArrow``);
- :func:`score_features` cuts it into chunks of :data:`CHUNK_ROWS` rows; each chunk is encoded
  column by column with :meth:`~wikichurn.training.model.ChurnScorer.encode_columns` (the serving
  path's encoder), scored with one booster call and explained with one ``pred_contrib`` call, so
  the largest array of a run (a chunk's contributions) is bounded whatever the number of rows;
- the top :data:`TOP_REASONS` reasons are a stable sort on ``-|contribution|`` over the chunk
  (:func:`top_reasons`), the ranking and tie-breaking of the API's explanation, and their values are
  formatted as :func:`format_value` does (``repr`` of a number, a category as is, null for a
  missing or infinite value);
- the scores are one Arrow table with exactly the contract's columns, written with
  ``spark.createDataFrame(table, schema)`` in one commit (in several of whole days when the table is
  over :data:`MAX_WRITE_BYTES`, a Spark Connect message's limit: see :func:`day_batches`).

So a row of ``gold_churn_scores`` is, field for field, what ``POST /score``
(:func:`~wikichurn.serving.scoring.score_instances` with ``explain`` and ``top_k=TOP_REASONS``)
answers for that domain and day; ``tests/serving/test_batch.py`` checks it against
``score_instances`` row by row, on NaN features, ties and unknown categories as well.

Incremental and idempotent: a run scores only the days the serving version has not scored yet, and
writes them in one commit (a ``MERGE`` on Delta keyed by domain, day and version), so a second run
writes nothing. A new production version scores every day again, under its own ``model_version``.

Nothing here imports pyspark at module level. The table's name and schema are the data contract's
(:mod:`wikichurn.core.tables`); the job reads and writes the lake through the pipeline's ``Lake``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from wikichurn.core.churn import KEY_COLUMNS, keyed_feature_columns
from wikichurn.core.settings import tracking_uri
from wikichurn.core.tables import (
    GOLD_FEATURES,
    GOLD_SCORES,
    SCORE_KEYS,
    SCORES_SCHEMA,
    TOP_REASONS,
    reason_columns,
)
from wikichurn.serving.registry import LoadedModel, RegistryModelLoader, build_loaded_model

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)


class NoProductionModelError(RuntimeError):
    """No tracking URI is configured, or the alias names no version, or the version cannot be loaded."""


@dataclass
class ScoreRunResult:
    """What one batch-scoring run did."""

    model_name: str
    model_version: str
    days: list[date] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        """A short human summary."""
        if not self.days:
            return f"{GOLD_SCORES}: nothing new for {self.model_name} v{self.model_version} ({self.seconds:.1f} s)"
        span = f"{min(self.days)}..{max(self.days)}"
        return (
            f"{GOLD_SCORES}: {self.rows:,} rows for {len(self.days)} day(s) ({span}) scored by "
            f"{self.model_name} v{self.model_version} in {self.seconds:.1f} s"
        )


# -- the model -----------------------------------------------------------------------------------


def load_production_model(settings: Settings) -> LoadedModel:
    """The version ``serving.model_alias`` names, loaded exactly as ``wikichurn serve`` loads it.

    Raises:
        NoProductionModelError: no tracking URI, no such alias, or the model cannot be loaded.
    """
    uri = tracking_uri(settings)
    if not uri:
        raise NoProductionModelError("no MLflow tracking URI is configured (set MLFLOW_TRACKING_URI)")
    serving = settings.serving
    loader = RegistryModelLoader(serving.model_name, serving.model_alias, serving.model_cache_dir)
    try:
        with mlflow_pointed_at(uri):
            ref = loader.resolve()
            return build_loaded_model(ref, loader.load(ref), settings.churn)
    except Exception as exc:  # ModelUnavailableError and whatever a registry raises
        raise NoProductionModelError(f"no production model to score with: {exc}") from exc
    finally:
        loader.close()  # the booster is in memory now; the download folder is not needed


def registry_reachable(uri: str, timeout_s: float = 3.0) -> bool:
    """False when ``uri`` is an MLflow server that does not answer its health check in time."""
    if not uri.startswith(("http://", "https://")):
        return True  # a file or database store: nothing to wait for
    import httpx

    try:
        return httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout_s).status_code < 500
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def mlflow_pointed_at(uri: str) -> Iterator[None]:
    """MLflow's tracking and registry URIs (and their variables) set to ``uri`` for the block, then restored.

    The registry loader uses MLflow's process-wide URIs; a batch run (or a test) must not leave
    them pointing elsewhere for the rest of the process.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from wikichurn.core.environment import scoped_environ

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    # set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ (for subprocesses): the
    # scope restores the variables as well as MLflow's globals.
    with scoped_environ({"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved


# -- pure scoring --------------------------------------------------------------------------------

# Rows per booster call: the contributions of a chunk (rows x (features + 1) doubles, 32 MB for 61
# columns) are the largest array of a run, so the chunk bounds the run's memory whatever its rows.
CHUNK_ROWS = 65_536

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),  # naive UTC, as PySpark reads it under the session's TZ=UTC
    "double": pa.float64(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "boolean": pa.bool_(),
}
# ``gold_churn_scores`` as Arrow: the table's columns, types and nullability, in order.
SCORES_ARROW_SCHEMA = pa.schema([pa.field(c.name, _ARROW_TYPES[c.type], c.nullable) for c in SCORES_SCHEMA])


def score_features(
    model: LoadedModel,
    features: pa.Table,
    scored_at: datetime | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> pa.Table:
    """Score feature rows of any days, column-wise, ``chunk_rows`` rows per booster call.

    Each chunk is encoded with :meth:`~wikichurn.training.model.ChurnScorer.encode_columns` (the
    serving path's encoder), scored with one booster call and explained with one ``pred_contrib``
    call; its reasons are the first :data:`TOP_REASONS` of a stable sort on the absolute
    contributions (:func:`top_reasons`), as :func:`~wikichurn.serving.scoring.score_instances` ranks
    them. So each row is what ``POST /score`` with ``explain`` answers for that domain and day.

    Args:
        model: the loaded model (:func:`load_production_model`).
        features: ``domain_code``, ``event_date`` and the model's feature columns, as
            ``gold_churn_features`` holds them (nulls are missing values), one row per domain and day.
        scored_at: the run's timestamp (naive UTC; default now).
        chunk_rows: rows per booster call.

    Returns:
        One row per feature row, in their order, with exactly :data:`SCORE_COLUMNS`
        (:data:`SCORES_ARROW_SCHEMA`).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    stamp = scored_at or datetime.now(UTC).replace(tzinfo=None)
    chunks = [
        _score_chunk(model, features.slice(start, chunk_rows), stamp)
        for start in range(0, features.num_rows, chunk_rows)
    ]
    return pa.concat_tables(chunks) if chunks else SCORES_ARROW_SCHEMA.empty_table()


def _score_chunk(model: LoadedModel, chunk: pa.Table, scored_at: datetime) -> pa.Table:
    scorer = model.scorer
    n = chunk.num_rows
    columns: dict[str, np.ndarray] = {
        name: _categories(chunk.column(name)) if name in scorer.categories else _numbers(chunk.column(name))
        for name in scorer.features
    }
    matrix = scorer.encode_columns(columns, n)
    risk = scorer.predict_proba(matrix)
    # TreeSHAP is nearly all of a run's time: every core here (the API uses one thread for its few
    # rows). Each row is computed on its own, so the values do not depend on the thread count.
    contributions = np.asarray(scorer.booster.predict(matrix, pred_contrib=True, num_threads=0), dtype="float64")
    per_feature = contributions.reshape(n, len(scorer.features) + 1)[:, :-1]
    top = top_reasons(per_feature, TOP_REASONS)
    names = np.asarray(scorer.features, dtype=object)
    threshold = scorer.threshold
    data: dict[str, Any] = {
        "domain_code": chunk.column("domain_code"),
        "event_date": chunk.column("event_date"),
        "risk_score": risk,
        "churn": risk >= threshold,
        "threshold": np.full(n, threshold),
        "model_name": pa.repeat(pa.scalar(model.ref.name, pa.string()), n),
        "model_version": pa.repeat(pa.scalar(model.version, pa.string()), n),
        "scored_at": pa.repeat(pa.scalar(scored_at, pa.timestamp("us")), n),
    }
    rows = np.arange(n)
    for k in range(1, TOP_REASONS + 1):
        feature, value, contribution = reason_columns(k)
        if k <= top.shape[1]:
            j = top[:, k - 1]
            data[feature] = names[j]
            data[value] = _reason_values(scorer.categories, columns, matrix, j, names)
            data[contribution] = per_feature[rows, j]
        else:  # fewer features than reasons: the API lists fewer contributions
            data[feature] = data[value] = data[contribution] = pa.nulls(n)
    arrays = [_as_arrow(data[f.name], f.type) for f in SCORES_ARROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCORES_ARROW_SCHEMA)


def top_reasons(contributions: np.ndarray, k: int) -> np.ndarray:
    """Per row, the positions of its ``k`` largest absolute contributions, largest first.

    A stable sort on ``-|contribution|``, row by row, exactly as the API's explanation ranks one
    row: ties keep the features' order.
    """
    return np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]


def _reason_values(
    categorical: Collection[str],
    columns: dict[str, np.ndarray],
    matrix: np.ndarray,
    picked: np.ndarray,
    names: np.ndarray,
) -> np.ndarray:
    """The value of feature ``picked[i]`` on row ``i`` as reason text (see :func:`format_value`)."""
    out = format_values(matrix[np.arange(len(picked)), picked])  # a number's encoded value is itself
    for j, name in enumerate(names):
        if name in categorical:  # the row's own category (as is, known to the model or not), not its code
            at = picked == j
            out[at] = columns[name][at]
    return out


def format_value(value: float | str | None) -> str | None:
    """A reason's value as text: ``repr`` of a number (it round-trips exactly), a category as is."""
    if value is None or isinstance(value, str):
        return value
    return repr(float(value))


def format_values(numbers: np.ndarray) -> np.ndarray:
    """:func:`format_value` of many numbers at once: ``repr`` of each finite one, None for the rest
    (NaN, a missing value, and +-inf, which the API reports as null)."""
    out = np.full(len(numbers), None, dtype=object)
    finite = np.isfinite(numbers)
    out[finite] = [repr(v) for v in numbers[finite].tolist()]
    return out


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric feature column as float64, null as NaN (what the booster reads as missing)."""
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int8())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype="float64")


def _categories(column: pa.ChunkedArray) -> np.ndarray:
    """A categorical feature column as an object array of its values, null as None."""
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _as_arrow(values: Any, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values if values.type == kind else values.cast(kind)
    return pa.array(values, kind)


def unique_keys(features: pa.Table) -> pa.Table:
    """``features`` with one row per domain and day, the last one of a key that appears twice."""
    keys = list(KEY_COLUMNS)
    if features.select(keys).group_by(keys).aggregate([]).num_rows == features.num_rows:
        return features
    numbered = features.select(keys).append_column("_row", pa.array(np.arange(features.num_rows)))
    last = np.sort(numbered.group_by(keys).aggregate([("_row", "max")])["_row_max"].to_numpy())
    log.warning(
        "%s: %d repeated domain/day rows, scoring the last of each", GOLD_FEATURES, features.num_rows - len(last)
    )
    return features.take(last)


# Spark Connect sends a local table in one gRPC message and refuses messages over 128 MB (and Sail
# does not take PySpark's cached-relation fallback for larger ones): a backfill of more than about
# two years x 1,000 domains is written in several commits, each of whole days.
MAX_WRITE_BYTES = 64 * 2**20


def day_batches(table: pa.Table, max_bytes: int = MAX_WRITE_BYTES) -> list[pa.Table]:
    """``table`` in slices of whole ``event_date`` days, each under ``max_bytes`` unless one day is larger.

    Whole days, because a run skips the days its model version has scored: a run killed between
    two commits leaves whole days done, and the next run scores the rest.
    """
    if table.num_rows == 0 or table.nbytes <= max_bytes:
        return [table]
    ordered = table.sort_by("event_date")
    dates = ordered.column("event_date").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, dates[1:] != dates[:-1]]).tolist()  # first row of each day
    per_row = ordered.nbytes / ordered.num_rows
    parts: list[pa.Table] = []
    begin = 0
    for day_start, day_end in zip(starts, [*starts[1:], ordered.num_rows], strict=True):
        if day_start > begin and (day_end - begin) * per_row > max_bytes:
            parts.append(ordered.slice(begin, day_start - begin))
            begin = day_start
    parts.append(ordered.slice(begin))
    return parts


# -- the job -------------------------------------------------------------------------------------


def run_scoring(
    spark: SparkSession,
    settings: Settings,
    model: LoadedModel | None = None,
    *,
    max_write_bytes: int = MAX_WRITE_BYTES,
) -> ScoreRunResult:
    """Score the complete days the serving version has not scored yet and write them in one commit
    (several, of whole days, when the scores are over ``max_write_bytes``: see :func:`day_batches`).

    Args:
        spark: the session from :func:`wikichurn.pipeline.spark.build_spark`.
        settings: the lake and the registry (``serving.model_name`` / ``model_alias``).
        model: the model to score with (default: :func:`load_production_model`).
        max_write_bytes: the largest Arrow table sent to the engine in one write.

    Raises:
        NoProductionModelError: no model holds the production alias.
        FileNotFoundError: ``gold_churn_features`` does not exist yet.
    """
    from pyspark.sql import functions as F

    from wikichurn.pipeline.lakehouse.lake import Lake
    from wikichurn.pipeline.lakehouse.schemas import struct_type

    started = time.monotonic()
    model = model or load_production_model(settings)
    lake = Lake(spark, settings)
    result = ScoreRunResult(model_name=model.ref.name, model_version=model.version)
    log.info("batch scoring with %s v%s", model.ref.name, model.version)
    if not lake.exists(GOLD_FEATURES):
        raise FileNotFoundError(f"{lake.path(GOLD_FEATURES)} does not exist: run `wikichurn pipeline run` first")

    complete = lake.read(GOLD_FEATURES).where(F.col("day_hours_available") >= settings.churn.min_hours_complete)
    days = {r[0] for r in complete.select("event_date").distinct().collect()}
    if lake.exists(GOLD_SCORES):
        done = lake.read(GOLD_SCORES).where(F.col("model_version") == F.lit(model.version))
        days -= {r[0] for r in done.select("event_date").distinct().collect()}
    if days:
        columns = keyed_feature_columns(model.churn)
        features = unique_keys(complete.where(F.col("event_date").isin(sorted(days))).select(*columns).toArrow())
        table = score_features(model, features)
        del features  # the scores are all the write needs
        parts = day_batches(table, max_write_bytes)
        commits = "one commit" if len(parts) == 1 else f"{len(parts)} commits of whole days"
        log.info("%s: writing %d rows for %d day(s) in %s", GOLD_SCORES, table.num_rows, len(days), commits)
        for part in parts:
            scores = spark.createDataFrame(part, struct_type(SCORES_SCHEMA))
            if lake.format == "delta":
                lake.upsert(scores, GOLD_SCORES, keys=SCORE_KEYS, partition_by=())
            else:  # parquet (the JVM lane): only unscored days are here, so appending cannot duplicate
                lake.append(scores, GOLD_SCORES)
        result.days, result.rows = sorted(days), table.num_rows
    result.seconds = time.monotonic() - started
    log.info(result.describe())
    return result


def score_if_production(spark: SparkSession, settings: Settings) -> ScoreRunResult | None:
    """:func:`run_scoring` when a production model exists; None (and a log line) otherwise."""
    uri = tracking_uri(settings)
    if not uri:
        log.info("batch scoring skipped: no MLflow tracking URI configured")
        return None
    if not registry_reachable(uri):
        # The run's tables are committed already; MLflow's own retries would hold the run for minutes.
        log.warning("batch scoring skipped: the MLflow server at %s does not answer (run `wikichurn score` later)", uri)
        return None
    try:
        return run_scoring(spark, settings)
    except (NoProductionModelError, FileNotFoundError) as exc:
        log.info("batch scoring skipped: %s", exc)
        return None
