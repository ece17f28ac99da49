"""Batch scoring: every domain on every complete day, with the production model, into ``gold_churn_scores``.

The rows are the feature rows the API scores (``gold_churn_features`` on days with all their hourly
files, exactly what ``wikichurn features export`` puts in the serving snapshot), and they are scored
by the API's own code: each day becomes a :class:`~wikichurn.serving.snapshot.FeatureSnapshot` that
:func:`~wikichurn.serving.scoring.score_instances` scores with one booster call (plus one for the
explanations), and the model comes from the same registry loader as ``wikichurn serve``. So a row of
``gold_churn_scores`` is, field for field, what ``POST /score`` answers for that domain and day.

Incremental and idempotent: a run scores only the days the serving version has not scored yet, and
writes them in one commit (a ``MERGE`` on Delta keyed by domain, day and version), so a second run
writes nothing. A new production version scores every day again, under its own ``model_version``.

Nothing here imports pyspark at module level. The table's name and schema are the data contract's
(:mod:`wikichurn.core.tables`); the job reads and writes the lake through the pipeline's ``Lake``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from wikichurn.core.churn import KEY_COLUMNS, feature_columns
from wikichurn.core.settings import tracking_uri
from wikichurn.core.tables import (
    GOLD_FEATURES,
    GOLD_SCORES,
    SCORE_COLUMNS,
    SCORE_KEYS,
    SCORES_SCHEMA,
    TOP_REASONS,
    reason_columns,
)
from wikichurn.serving.registry import LoadedModel, RegistryModelLoader, build_loaded_model
from wikichurn.serving.schemas import ScoreInstance
from wikichurn.serving.scoring import ServingState, score_instances
from wikichurn.serving.snapshot import FeatureSnapshot, SnapshotRow

if TYPE_CHECKING:
    import pandas as pd
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


def feature_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Feature rows as the serving snapshot holds them: plain Python values, NaN as None.

    The frame goes through Arrow, as the snapshot's parquet file does, so a value the API reads
    from the snapshot and a value scored here are the same Python object.
    """
    import pyarrow as pa

    records = pa.Table.from_pandas(frame, preserve_index=False).to_pylist()
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]


def score_records(
    model: LoadedModel, records: list[dict[str, Any]], scored_at: datetime | None = None
) -> list[dict[str, Any]]:
    """Score feature rows of any days: one :func:`score_instances` call (one booster call) per day.

    Args:
        model: the loaded model (:func:`load_production_model`).
        records: :func:`feature_records` rows with ``domain_code`` and ``event_date``.
        scored_at: the run's timestamp (naive UTC; default now).

    Returns:
        One :data:`SCORE_COLUMNS` dict per row that could be scored.
    """
    scored_at = scored_at or datetime.now(UTC).replace(tzinfo=None)
    by_day: dict[date, dict[str, SnapshotRow]] = defaultdict(dict)
    for record in records:
        features = {k: v for k, v in record.items() if k != "event_date"}
        by_day[record["event_date"]][str(record["domain_code"])] = SnapshotRow(record["event_date"], features)
    out: list[dict[str, Any]] = []
    for day in sorted(by_day):
        rows = by_day[day]
        state = ServingState(model=model, snapshot=FeatureSnapshot(path=GOLD_FEATURES, as_of=day, rows=rows))
        instances = [ScoreInstance(domain_code=domain) for domain in rows]
        for result in score_instances(state, instances, explain=True, top_k=TOP_REASONS):
            if "error" in result:  # cannot happen for a snapshot row, but never lose the others
                log.warning("not scored: %s on %s: %s", result["domain_code"], day, result["error"]["message"])
                continue
            out.append(_score_row(model, result, scored_at))
    return out


def _score_row(model: LoadedModel, result: dict[str, Any], scored_at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "domain_code": result["domain_code"],
        "event_date": result["as_of"],
        "risk_score": result["risk_score"],
        "churn": bool(result["churn"]),
        "threshold": result["threshold"],
        "model_name": model.ref.name,
        "model_version": model.version,
        "scored_at": scored_at,
    }
    contributions = result["explanation"]["contributions"]
    for k in range(1, TOP_REASONS + 1):
        feature, value, contribution = reason_columns(k)
        item = contributions[k - 1] if k <= len(contributions) else None
        row[feature] = item["feature"] if item else None
        row[value] = format_value(item["value"]) if item else None
        row[contribution] = item["contribution"] if item else None
    return row


def format_value(value: float | str | None) -> str | None:
    """A reason's value as text: ``repr`` of a number (it round-trips exactly), a category as is."""
    if value is None or isinstance(value, str):
        return value
    return repr(float(value))


# -- the job -------------------------------------------------------------------------------------


def run_scoring(spark: SparkSession, settings: Settings, model: LoadedModel | None = None) -> ScoreRunResult:
    """Score the complete days the serving version has not scored yet and write them in one commit.

    Args:
        spark: the session from :func:`wikichurn.pipeline.spark.build_spark`.
        settings: the lake and the registry (``serving.model_name`` / ``model_alias``).
        model: the model to score with (default: :func:`load_production_model`).

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
        columns = [*KEY_COLUMNS, *(c for c in feature_columns(model.churn) if c not in KEY_COLUMNS)]
        frame = complete.where(F.col("event_date").isin(sorted(days))).select(*columns).toPandas()
        rows = score_records(model, feature_records(frame))
        log.info("%s: writing %d rows for %d day(s) in one commit", GOLD_SCORES, len(rows), len(days))
        scores = spark.createDataFrame([tuple(r[c] for c in SCORE_COLUMNS) for r in rows], struct_type(SCORES_SCHEMA))
        if lake.format == "delta":
            lake.upsert(scores, GOLD_SCORES, keys=SCORE_KEYS, partition_by=())
        else:  # parquet (the JVM lane): only unscored days are here, so appending cannot duplicate
            lake.append(scores, GOLD_SCORES)
        result.days, result.rows = sorted(days), len(rows)
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
