"""The data contract: every lake table's name, and the schemas of the train/serve tables.

Each name is defined here once; the pipeline, training, serving, the warehouse export and the
dashboard import it. ``gold_churn_features`` (written by the feature job, read by training, the
snapshot export and batch scoring) and ``gold_churn_scores`` (written by batch scoring, read by
the dashboard) get explicit schemas as plain type maps, because the core never imports pyspark:
``wikichurn.pipeline.lakehouse.schemas.struct_type`` turns one into a Spark ``StructType`` and
``tests/pipeline/test_features_job.py`` / ``tests/serving/test_batch.py`` check that the written
Delta tables match them. The feature table's columns come from :mod:`wikichurn.core.featurespec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wikichurn.core.featurespec import KEY_COLUMNS, feature_spec
from wikichurn.core.settings import ChurnSettings

BRONZE = "bronze_projectviews"
BRONZE_LEDGER = "bronze_file_ledger"
SILVER_CLEAN = "silver_projectviews_clean"
SILVER_QUARANTINE = "silver_projectviews_quarantine"
SILVER_DQ_REPORTS = "silver_dq_reports"
GOLD_DAILY = "gold_daily_projectviews"
GOLD_FEATURES = "gold_churn_features"
GOLD_SCORES = "gold_churn_scores"
GOLD_KPIS_DAILY = "gold_kpis_daily"
GOLD_KPIS_DOMAIN = "gold_kpis_domain"
GOLD_KPIS_WEEKLY = "gold_kpis_weekly"
GOLD_KPIS_MONTHLY = "gold_kpis_monthly"
GOLD_QUALITY_SPIKES = "gold_quality_spikes"
# The tables a pipeline run writes, in the order it writes them (before the features).
PIPELINE_TABLES: tuple[str, ...] = (
    BRONZE,
    BRONZE_LEDGER,
    SILVER_CLEAN,
    SILVER_QUARANTINE,
    SILVER_DQ_REPORTS,
    GOLD_DAILY,
)

# Spark SQL type names (what ``DataFrame.select(col.cast(name))`` accepts).
ColumnType = Literal["string", "date", "timestamp", "double", "bigint", "int", "boolean"]


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    type: ColumnType
    nullable: bool = True


def features_schema(churn: ChurnSettings | None = None) -> tuple[Column, ...]:
    """``gold_churn_features``: the keys, then every feature and label of the spec, in order."""
    keys = (Column("domain_code", "string", False), Column("event_date", "date", False))
    never_null = {"observed", "position", "hours", "calendar", "zero_days", "label_available"}
    return keys + tuple(
        Column(f.name, f.dtype, f.kind not in never_null) for f in feature_spec(churn) if f.name not in KEY_COLUMNS
    )


# -- gold_churn_scores ----------------------------------------------------------------------------

TOP_REASONS = 3
SCORE_KEYS: tuple[str, ...] = ("domain_code", "event_date", "model_version")


def reason_columns(k: int) -> tuple[str, str, str]:
    """Feature, value and contribution columns of the ``k``-th reason (1-based)."""
    return f"reason_{k}_feature", f"reason_{k}_value", f"reason_{k}_contribution"


# A reason's value is text: it may be a category.
_REASON_TYPES: tuple[ColumnType, ColumnType, ColumnType] = ("string", "string", "double")
SCORES_SCHEMA: tuple[Column, ...] = (
    Column("domain_code", "string", False),
    Column("event_date", "date", False),
    Column("risk_score", "double", False),
    Column("churn", "boolean", False),
    Column("threshold", "double", False),
    Column("model_name", "string", False),
    Column("model_version", "string", False),
    Column("scored_at", "timestamp", False),
    *(
        Column(name, kind)
        for k in range(1, TOP_REASONS + 1)
        for name, kind in zip(reason_columns(k), _REASON_TYPES, strict=True)
    ),
)
SCORE_COLUMNS: tuple[str, ...] = tuple(c.name for c in SCORES_SCHEMA)
