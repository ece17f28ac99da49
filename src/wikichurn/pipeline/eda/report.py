"""The EDA job: :func:`run_eda` reads the lake through :class:`~wikichurn.pipeline.lakehouse.lake.Lake`,
computes the KPI and quirk tables (:mod:`.kpis`, :mod:`.quirks`), writes them back to the lake,
collects the small aggregates, draws the plots (:mod:`.plots`), writes the HTML page (:mod:`.html`)
and, when an MLflow tracking URI is configured, logs all of it to the ``wikichurn-eda`` experiment
(:func:`log_to_mlflow`). See ``docs/eda.md``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from wikichurn.core import tables
from wikichurn.core.tables import GOLD_FEATURES
from wikichurn.pipeline.eda.html import write_report
from wikichurn.pipeline.eda.kpis import (
    churn_rate_by_date,
    churn_rate_by_domain,
    churn_rate_by_family,
    concentration,
    daily_engagement,
    daily_kpis,
    dense_domain_days,
    domain_kpis,
    lake_calendar,
    period_views,
    streak_summary,
    with_streaks,
)
from wikichurn.pipeline.eda.plots import render_plots
from wikichurn.pipeline.eda.quirks import (
    SpikeRule,
    completeness_from_gold,
    hourly_completeness,
    spike_list,
    weekday_seasonality,
    weekend_ratio,
    with_spikes,
)
from wikichurn.pipeline.eda.results import (
    EDA_EXPERIMENT,
    EDA_RUN_NAME,
    GOLD_KPIS_DAILY,
    GOLD_KPIS_DOMAIN,
    GOLD_KPIS_MONTHLY,
    GOLD_KPIS_WEEKLY,
    GOLD_QUALITY_SPIKES,
    PLOTS_FOLDER,
    REPORT_NAME,
    EdaFrames,
    EdaResult,
)
from wikichurn.pipeline.lakehouse.features import domain_metadata
from wikichurn.pipeline.lakehouse.lake import Lake

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)


def run_eda(
    spark: SparkSession,
    settings: Settings,
    out_dir: Path,
    *,
    spike_rule: SpikeRule = SpikeRule(),
    mlflow_artifact_location: str | None = None,
) -> EdaResult:
    """Compute the EDA KPI tables, write them to the lake, draw the plots and the HTML report.

    Args:
        spark: the session from :func:`wikichurn.pipeline.spark.build_spark`.
        settings: the lake location, table format, churn completeness threshold and MLflow URI.
        out_dir: folder for ``report.html`` and ``plots/*.png`` (created if needed).
        spike_rule: the spike definition.
        mlflow_artifact_location: artifact root used only if the MLflow experiment is created here.

    Returns:
        Paths, table row counts and headline numbers.

    Raises:
        FileNotFoundError: the lake has no gold table yet.
    """
    started = time.monotonic()
    lake = Lake(spark, settings)
    if not lake.exists(tables.GOLD_DAILY):
        raise FileNotFoundError(f"no {tables.GOLD_DAILY} in {lake.root}: run `wikichurn pipeline run` first")
    notes: list[str] = []
    gold = lake.read(tables.GOLD_DAILY).select("domain_code", "count_views", "hours_present", "event_date")
    ledger = lake.read(tables.BRONZE_LEDGER) if lake.exists(tables.BRONZE_LEDGER) else None
    features = lake.read(GOLD_FEATURES) if lake.exists(GOLD_FEATURES) else None
    if ledger is None:
        notes.append(f"no {tables.BRONZE_LEDGER}: hourly completeness is a lower bound taken from gold")
    if features is None:
        notes.append(f"no {GOLD_FEATURES}: churn base rates are not available (run `wikichurn features`)")

    min_hours = settings.churn.min_hours_complete
    calendar = lake_calendar(gold, ledger)
    completeness = (
        hourly_completeness(ledger, calendar, min_hours)
        if ledger is not None
        else completeness_from_gold(gold, calendar, min_hours)
    )
    codes = [row[0] for row in gold.select("domain_code").distinct().collect()]
    meta = domain_metadata(spark, codes)
    domain_days = with_spikes(with_streaks(dense_domain_days(gold, calendar)), spike_rule)

    kpi_frames = {
        GOLD_KPIS_DAILY: daily_kpis(
            calendar,
            daily_engagement(gold),
            concentration(gold),
            streak_summary(domain_days),
            completeness,
            churn_rate_by_date(features) if features is not None else None,
        ),
        GOLD_KPIS_DOMAIN: domain_kpis(
            gold, domain_days, meta, churn_rate_by_domain(features) if features is not None else None
        ),
        GOLD_KPIS_WEEKLY: period_views(gold, calendar, "week"),
        GOLD_KPIS_MONTHLY: period_views(gold, calendar, "month"),
        GOLD_QUALITY_SPIKES: spike_list(domain_days),
    }
    for name, frame in kpi_frames.items():
        lake.overwrite(frame, name)
        log.info("eda: wrote %s", name)

    frames = _collect(lake, gold, calendar, completeness, meta, features, spike_rule)
    row_counts = {
        GOLD_KPIS_DAILY: len(frames.daily),
        GOLD_KPIS_DOMAIN: len(frames.domains),
        GOLD_KPIS_WEEKLY: lake.count(GOLD_KPIS_WEEKLY),
        GOLD_KPIS_MONTHLY: lake.count(GOLD_KPIS_MONTHLY),
        GOLD_QUALITY_SPIKES: len(frames.spikes),
    }

    out_dir = Path(out_dir)
    plots = render_plots(frames, out_dir / PLOTS_FOLDER, spike_rule=spike_rule, min_hours=min_hours)
    result = _headline(frames, out_dir, plots, row_counts, notes)
    result.report = write_report(frames, result, out_dir / REPORT_NAME, settings=settings, spike_rule=spike_rule)

    uri = settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        result.mlflow_run_id = log_to_mlflow(result, uri, artifact_location=mlflow_artifact_location)
    result.seconds = time.monotonic() - started
    log.info(result.describe())
    return result


def _collect(
    lake: Lake,
    gold: DataFrame,
    calendar: DataFrame,
    completeness: DataFrame,
    meta: DataFrame,
    features: DataFrame | None,
    spike_rule: SpikeRule,
) -> EdaFrames:
    import pandas as pd

    daily = _pandas(lake.read(GOLD_KPIS_DAILY).orderBy("event_date"))
    domains = _pandas(lake.read(GOLD_KPIS_DOMAIN)).sort_values("total_views", ascending=False, ignore_index=True)
    spikes = _pandas(lake.read(GOLD_QUALITY_SPIKES))
    top = domains["domain_code"].head(5).tolist()

    def period(table: str, key: str) -> pd.DataFrame:
        wanted = (F.col("level") == "total") | F.col("domain_code").isin(top) if top else F.col("level") == "total"
        return _pandas(lake.read(table).where(wanted).orderBy(key))

    seasonality_df = weekday_seasonality(gold, meta, completeness)
    seasonality = _pandas(seasonality_df).sort_values(["access", "dayofweek"], ignore_index=True)
    weekend = _pandas(weekend_ratio(seasonality_df))
    if features is not None:
        churn_family = _pandas(churn_rate_by_family(features)).sort_values("labelled_rows", ascending=False)
    else:
        churn_family = pd.DataFrame(columns=["project_family", "churn_base_rate", "labelled_rows", "churn_positives"])

    # A few big domains with spikes (the biggest domains when nothing spiked), recomputed alone:
    # the windows are per domain, so filtering gold first gives the same values.
    with_spike = domains[domains["spike_count"] > 0]["domain_code"].head(4).tolist()
    shown = with_spike or domains["domain_code"].head(4).tolist()
    series = (
        _pandas(
            with_spikes(dense_domain_days(gold.where(F.col("domain_code").isin(shown)), calendar), spike_rule).select(
                "domain_code", "event_date", "count_views", "baseline_mean", "spike_threshold", "is_spike"
            )
        )
        if shown
        else pd.DataFrame(columns=["domain_code", "event_date", "count_views"])
    )
    return EdaFrames(
        daily=daily,
        domains=domains,
        weekly=period(GOLD_KPIS_WEEKLY, "week_start"),
        monthly=period(GOLD_KPIS_MONTHLY, "month_start"),
        # Biggest excess first: a tiny domain going from 1 to 6 views is a spike, but not news.
        spikes=spikes.sort_values(["excess_views", "domain_code"], ascending=[False, True], ignore_index=True),
        seasonality=seasonality,
        weekend=weekend,
        churn_family=churn_family.reset_index(drop=True),
        spike_series=series.sort_values(["domain_code", "event_date"], ignore_index=True),
        top_domains=top,
    )


def _pandas(frame: DataFrame) -> pd.DataFrame:
    # pyspark annotates toPandas() with a protocol that has none of pandas' methods.
    return frame.toPandas()


def _headline(
    frames: EdaFrames, out_dir: Path, plots: dict[str, Path], row_counts: dict[str, int], notes: list[str]
) -> EdaResult:
    daily, family = frames.daily, frames.churn_family
    labelled = int(family["labelled_rows"].sum()) if len(family) else 0
    positives = int(family["churn_positives"].fillna(0).sum()) if len(family) else 0
    hhi = daily["hhi"].dropna()
    overall = frames.weekend[frames.weekend["access"] == "all"]["weekend_weekday_ratio"].dropna()
    return EdaResult(
        out_dir=out_dir,
        report=out_dir / REPORT_NAME,
        plots=plots,
        tables=row_counts,
        first_date=str(daily["event_date"].min()) if len(daily) else None,
        last_date=str(daily["event_date"].max()) if len(daily) else None,
        dates=len(daily),
        domains=len(frames.domains),
        total_views=int(daily["total_views"].sum()) if len(daily) else 0,
        churn_base_rate=positives / labelled if labelled else None,
        labelled_rows=labelled,
        median_hhi=float(hhi.median()) if len(hhi) else None,
        incomplete_dates=int(daily["incomplete"].sum()) if len(daily) else 0,
        spikes=len(frames.spikes),
        weekend_weekday_ratio=float(overall.iloc[0]) if len(overall) else None,
        notes=notes,
    )


def log_to_mlflow(result: EdaResult, tracking_uri: str, *, artifact_location: str | None = None) -> str:
    """Log the report, the plots and the headline numbers as a run ``eda`` of ``wikichurn-eda``.

    Uses an explicit client (no global MLflow state, no active run left behind).

    Returns:
        The MLflow run id.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EDA_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(EDA_EXPERIMENT, artifact_location=artifact_location)
    )
    run = client.create_run(experiment_id, run_name=EDA_RUN_NAME, tags={"wikichurn.kind": "eda"})
    run_id = run.info.run_id
    try:
        for name, value in result.metrics().items():
            client.log_metric(run_id, name, value)
        for table, rows in result.tables.items():
            client.log_metric(run_id, f"rows_{table}", float(rows))
        if result.first_date:
            client.log_param(run_id, "first_date", result.first_date)
            client.log_param(run_id, "last_date", result.last_date)
        client.log_artifact(run_id, str(result.report))
        plots_dir = result.report.parent / PLOTS_FOLDER
        for path in result.plots.values():
            client.log_artifact(run_id, str(path), artifact_path=PLOTS_FOLDER if path.parent == plots_dir else None)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    log.info("eda: logged to MLflow run %s (%s)", run_id, tracking_uri)
    return run_id
