"""The dashboard's reads of the lake: Delta tables through ``deltalake``, aggregates with DuckDB, no Spark.

Every function here is plain (no Streamlit) and returns pandas frames, so the pages only lay out
what these compute, and tests call them directly. ``LakeReader.version`` gives each table's Delta
version: the pages key their caches on it, so a new pipeline or scoring run shows at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from deltalake import DeltaTable

from wikichurn.core.churn import parse_domain_code
from wikichurn.core.settings import Settings
from wikichurn.core.storage import delta_storage_options

# The table names are the data contract's (no pyspark there, so the dashboard can import them).
from wikichurn.core.tables import (
    BRONZE,
    BRONZE_LEDGER,
    GOLD_DAILY,
    GOLD_KPIS_DAILY,
    GOLD_KPIS_MONTHLY,
    GOLD_KPIS_WEEKLY,
    GOLD_SCORES,
    SILVER_CLEAN,
    SILVER_DQ_REPORTS,
    SILVER_QUARANTINE,
    TOP_REASONS,
    reason_columns,
)

log = logging.getLogger(__name__)


class LakeReader:
    """Read-only access to the Delta tables under one lake root (a folder or ``s3://``)."""

    def __init__(self, settings: Settings) -> None:
        uri = settings.lake_uri
        self.is_s3 = settings.is_s3(uri)
        self.root = uri.replace("s3a://", "s3://", 1) if self.is_s3 else str(Path(uri).expanduser().resolve())
        self.options = delta_storage_options(settings.s3) if self.is_s3 else None

    def path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def table(self, table: str) -> DeltaTable | None:
        """The Delta table, or None when it has not been written yet."""
        if not self.is_s3 and not (Path(self.path(table)) / "_delta_log").is_dir():
            return None
        try:
            return DeltaTable(self.path(table), storage_options=self.options)
        except Exception as exc:  # TableNotFoundError, or an unreachable S3
            log.debug("no table %s: %s", table, exc)
            return None

    def version(self, table: str) -> int | None:
        """The table's current Delta version (None: no table); cache keys of the pages."""
        found = self.table(table)
        return int(found.version()) if found is not None else None

    def read(self, table: str, columns: list[str] | None = None, filters: Any = None) -> pd.DataFrame | None:
        """The table as pandas (None: no table)."""
        found = self.table(table)
        if found is None:
            return None
        return found.to_pandas(columns=columns, filters=filters)

    def row_count(self, table: str) -> int | None:
        """Rows of the table from the Delta log's file statistics (no data read)."""
        found = self.table(table)
        if found is None:
            return None
        import pyarrow as pa

        actions = pa.table(found.get_add_actions(flatten=True)).to_pydict()
        counts = actions.get("num_records") or []
        if not counts or any(n is None for n in counts):  # a writer that keeps no statistics
            return int(found.to_pyarrow_dataset().count_rows())
        return int(sum(counts))


def _sql(query: str, **frames: pd.DataFrame) -> pd.DataFrame:
    """Run DuckDB SQL over pandas frames registered under the given names (a private connection)."""
    con = duckdb.connect()
    try:
        for name, frame in frames.items():
            con.register(name, frame)
        return con.execute(query).df()
    finally:
        con.close()


def _dates(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


# -- at risk -------------------------------------------------------------------------------------


def scores_for_version(reader: LakeReader, version: str | None) -> pd.DataFrame | None:
    """``gold_churn_scores`` rows of one model version (every version when None)."""
    filters = [("model_version", "=", version)] if version else None
    frame = reader.read(GOLD_SCORES, filters=filters)
    return None if frame is None else _dates(frame, "event_date")


def domain_metadata(codes: list[str]) -> pd.DataFrame:
    """Language, project family and access of each code (the project's one parser)."""
    rows = [{"domain_code": code, **vars(parse_domain_code(code))} for code in sorted(set(codes))]
    return pd.DataFrame(rows, columns=["domain_code", "language", "project_family", "access"])


def ranked_day(scores: pd.DataFrame, views: pd.DataFrame | None, day: date) -> pd.DataFrame:
    """The scores of ``day`` ranked by risk, with the domain's metadata and its views that day."""
    frame = scores[scores["event_date"] == day].copy()
    frame = frame.merge(domain_metadata(frame["domain_code"].tolist()), on="domain_code", how="left")
    if views is not None and len(views):
        day_views = views[views["event_date"] == day][["domain_code", "count_views"]]
        frame = frame.merge(day_views, on="domain_code", how="left")
    else:
        frame["count_views"] = 0
    frame["count_views"] = frame["count_views"].fillna(0).astype("int64")
    frame = frame.sort_values(["risk_score", "domain_code"], ascending=[False, True], kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class RiskFilter:
    """The At risk page's filters (empty = everything)."""

    families: tuple[str, ...] = ()
    access: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    min_views: int = 0
    only_flagged: bool = False


def filter_ranked(ranked: pd.DataFrame, flt: RiskFilter) -> pd.DataFrame:
    """Rows of :func:`ranked_day` that pass the filters (ranks are kept)."""
    mask = ranked["count_views"] >= flt.min_views
    if flt.families:
        mask &= ranked["project_family"].isin(flt.families)
    if flt.access:
        mask &= ranked["access"].isin(flt.access)
    if flt.languages:
        mask &= ranked["language"].isin(flt.languages)
    if flt.only_flagged:
        mask &= ranked["churn"]
    return ranked[mask].reset_index(drop=True)


def daily_views(reader: LakeReader) -> pd.DataFrame | None:
    """``gold_daily_projectviews`` (domain, day, views)."""
    frame = reader.read(GOLD_DAILY, columns=["domain_code", "event_date", "count_views"])
    return None if frame is None else _dates(frame, "event_date")


def view_history(views: pd.DataFrame, domain: str, end: date, days: int, window: int, factor: float) -> pd.DataFrame:
    """A domain's last ``days`` daily views up to ``end`` (absent days = 0 views, as in the lake),
    the mean of the ``window`` days before each day, and the churn threshold ``factor`` x that mean."""
    own = views[views["domain_code"] == domain].set_index("event_date")["count_views"]
    if own.empty:
        return pd.DataFrame(columns=["event_date", "views", "past_mean", "threshold"])
    first = min(own[own > 0].index, default=min(own.index))
    calendar = [first + timedelta(days=i) for i in range((end - first).days + 1)]
    series = own.reindex(calendar, fill_value=0).astype("float64")
    past_mean = series.rolling(window, min_periods=window).mean().shift(1)
    frame = pd.DataFrame({"event_date": calendar, "views": series.values, "past_mean": past_mean.values})
    frame["threshold"] = factor * frame["past_mean"]
    return frame.tail(days).reset_index(drop=True)


def reasons(row: pd.Series) -> pd.DataFrame:
    """The top contributions of one score row as a small table."""
    items = []
    for k in range(1, TOP_REASONS + 1):
        feature, value, contribution = reason_columns(k)
        if pd.notna(row.get(feature)):
            items.append(
                {
                    "feature": row[feature],
                    "value": _pretty(row[value]),
                    "contribution (log-odds)": float(row[contribution]),
                    "effect": "raises risk" if row[contribution] > 0 else "lowers risk",
                }
            )
    return pd.DataFrame(items, columns=["feature", "value", "contribution (log-odds)", "effect"])


def _pretty(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "missing" if value is None else str(value)
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.3g}"


# -- engagement ----------------------------------------------------------------------------------


def compact_count(views: int) -> str:
    """A large count that fits a metric tile: 14.16 B, 480.61 M, 12,345."""
    for size, unit in ((1e9, "B"), (1e6, "M")):
        if views >= size:
            return f"{views / size:,.2f} {unit}"
    return f"{views:,}"


# When `wikichurn eda` has not run, the same KPIs from gold (definitions as in pipeline/eda).
_DAILY_SQL = """
WITH shares AS (
    SELECT event_date, count_views, count_views / SUM(count_views) OVER (PARTITION BY event_date) AS share
    FROM gold WHERE count_views > 0
)
SELECT event_date, SUM(count_views)::BIGINT AS total_views, COUNT(*)::INT AS active_domains,
       SUM(share * share) AS hhi, 1 - SUM(share * share) AS diversity, isodow(event_date) AS dayofweek
FROM shares GROUP BY event_date ORDER BY event_date
"""


def engagement_daily(reader: LakeReader) -> tuple[pd.DataFrame | None, str]:
    """Per day: total views (DAU in views), active domains, HHI, diversity; and where they came from."""
    kpis = reader.read(GOLD_KPIS_DAILY)
    if kpis is not None:
        return _dates(kpis, "event_date").sort_values("event_date").reset_index(drop=True), GOLD_KPIS_DAILY
    gold = reader.read(GOLD_DAILY, columns=["domain_code", "event_date", "count_views"])
    if gold is None:
        return None, ""
    frame = _sql(_DAILY_SQL, gold=gold)
    frame["incomplete"] = False
    return _dates(frame, "event_date"), f"computed from {GOLD_DAILY} (run `wikichurn eda` for {GOLD_KPIS_DAILY})"


def period_totals(reader: LakeReader, period: str) -> pd.DataFrame | None:
    """Total views per ISO week (``week``) or month (``month``): WAU / MAU in views."""
    table, key = (GOLD_KPIS_WEEKLY, "week_start") if period == "week" else (GOLD_KPIS_MONTHLY, "month_start")
    kpis = reader.read(table)
    if kpis is not None:
        total = kpis[kpis["level"] == "total"][[key, "views", "partial"]]
        return _dates(total.rename(columns={key: "period_start"}), "period_start").sort_values("period_start")
    gold = reader.read(GOLD_DAILY, columns=["event_date", "count_views"])
    if gold is None:
        return None
    sql = (
        f"SELECT date_trunc('{period}', event_date)::DATE AS period_start, SUM(count_views)::BIGINT AS views, "
        "false AS partial FROM gold GROUP BY 1 ORDER BY 1"
    )
    return _dates(_sql(sql, gold=gold), "period_start")


def weekday_seasonality(reader: LakeReader, complete_days: set[date]) -> pd.DataFrame | None:
    """Mean daily views by ISO weekday and access type over complete days."""
    gold = daily_views(reader)
    if gold is None:
        return None
    gold = gold[gold["event_date"].isin(complete_days)] if complete_days else gold
    meta = domain_metadata(gold["domain_code"].unique().tolist())
    sql = """
    WITH per_day AS (
        SELECT g.event_date, m.access, SUM(g.count_views) AS views
        FROM gold g JOIN meta m USING (domain_code) GROUP BY ALL
    )
    SELECT access, isodow(event_date) AS dayofweek, AVG(views) AS mean_views FROM per_day GROUP BY ALL
    UNION ALL
    SELECT 'all', isodow(event_date), AVG(views) FROM (SELECT event_date, SUM(views) AS views FROM per_day GROUP BY 1)
    GROUP BY ALL ORDER BY 1, 2
    """
    return _sql(sql, gold=gold, meta=meta)


def top_movers(reader: LakeReader, n: int = 10) -> tuple[pd.DataFrame | None, str]:
    """Domains whose views changed most between the last two complete ISO weeks."""
    weekly = reader.read(GOLD_KPIS_WEEKLY)
    if weekly is not None:
        weekly = weekly[(weekly["level"] == "domain") & (~weekly["partial"])][["domain_code", "week_start", "views"]]
    else:
        gold = reader.read(GOLD_DAILY, columns=["domain_code", "event_date", "count_views"])
        if gold is None:
            return None, ""
        sql = """SELECT domain_code, date_trunc('week', event_date)::DATE AS week_start, SUM(count_views) AS views,
                        COUNT(DISTINCT event_date) AS days FROM gold GROUP BY ALL"""
        weekly = _sql(sql, gold=gold)
        weekly = weekly[weekly["days"] == 7].drop(columns="days")
    weeks = sorted(pd.to_datetime(weekly["week_start"]).dt.date.unique())
    if len(weeks) < 2:
        return None, "fewer than two complete weeks in the lake"
    last, before = weeks[-1], weeks[-2]
    weekly = _dates(weekly.copy(), "week_start")
    pivot = weekly[weekly["week_start"].isin([before, last])].pivot_table(
        index="domain_code", columns="week_start", values="views", fill_value=0
    )
    movers = pd.DataFrame(
        {"domain_code": pivot.index, "views_before": pivot[before].values, "views_last": pivot[last].values}
    )
    movers["change"] = movers["views_last"] - movers["views_before"]
    movers["change_pct"] = movers["change"] / movers["views_before"].where(movers["views_before"] > 0)
    movers = movers.reindex(movers["change"].abs().sort_values(ascending=False).index).head(n)
    return movers.reset_index(drop=True), f"week of {last} vs week of {before}"


# -- data quality --------------------------------------------------------------------------------


def dq_runs(reader: LakeReader) -> pd.DataFrame | None:
    """One row per pipeline run: rows in / clean / quarantined per reason, and the conservation check."""
    reports = reader.read(SILVER_DQ_REPORTS)
    if reports is None:
        return None
    rows = []
    for record in reports.sort_values("run_at").to_dict("records"):
        report = json.loads(record["report"])
        row = {
            "run_id": record["run_id"],
            "run_at": pd.Timestamp(record["run_at"]),
            "files": report.get("files_processed"),
            "rows_in": int(record["rows_in"]),
            "rows_clean": int(record["rows_clean"]),
            "rows_quarantined": int(record["rows_quarantined"]),
        }
        row.update({f"q_{k}": int(v) for k, v in (report.get("quarantined_by_reason") or {}).items()})
        row["conserved"] = row["rows_in"] == row["rows_clean"] + row["rows_quarantined"]
        rows.append(row)
    return pd.DataFrame(rows)


def hourly_completeness(reader: LakeReader) -> pd.DataFrame | None:
    """Per date of the ledger: hourly files present (0..24) and the missing hours."""
    ledger = reader.read(BRONZE_LEDGER, columns=["event_timestamp", "event_date"])
    if ledger is None or ledger.empty:
        return None
    ledger = ledger.dropna()
    hours = pd.to_datetime(ledger["event_timestamp"]).dt.hour
    present = pd.DataFrame({"event_date": pd.to_datetime(ledger["event_date"]).dt.date, "hour": hours})
    present = present.drop_duplicates()
    first, last = min(present["event_date"]), max(present["event_date"])
    calendar = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    by_day = present.groupby("event_date")["hour"].apply(set).reindex(calendar)
    rows = []
    for day, got in by_day.items():
        got = got if isinstance(got, set) else set()
        missing = sorted(set(range(24)) - got)
        rows.append({"event_date": day, "hours_present": 24 - len(missing), "missing_hours": missing})
    frame = pd.DataFrame(rows)
    stamp = pd.to_datetime(frame["event_date"])
    frame["week_start"] = (stamp - pd.to_timedelta(stamp.dt.weekday, unit="D")).dt.strftime("%Y-%m-%d")
    frame["weekday"] = stamp.dt.strftime("%a")
    return frame


def conservation(reader: LakeReader) -> dict[str, int | None]:
    """Whole-lake row counts: bronze rows must equal silver clean + quarantined."""
    return {
        "bronze": reader.row_count(BRONZE),
        "clean": reader.row_count(SILVER_CLEAN),
        "quarantined": reader.row_count(SILVER_QUARANTINE),
    }


def flagged_per_day(scores: pd.DataFrame) -> pd.DataFrame:
    """Domains scored and flagged (churn at the threshold) per day."""
    grouped = scores.groupby("event_date").agg(scored=("churn", "size"), flagged=("churn", "sum")).reset_index()
    grouped["flagged"] = grouped["flagged"].astype("int64")
    return grouped
