"""EDA KPIs on a hand-built lake (raw files -> pipeline -> run_eda) on Sail + Delta, checked
against values worked out by hand and by plain Python over the same hand-made numbers."""

from __future__ import annotations

import base64
import json
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from tests.utils.raw import write_raw
from wikichurn.core import tables
from wikichurn.core.churn import parse_domain_code
from wikichurn.core.columnar import domain_frame
from wikichurn.core.settings import Settings
from wikichurn.pipeline.eda import kpis, plots, quirks, results
from wikichurn.pipeline.eda.quirks import SpikeRule
from wikichurn.pipeline.eda.report import run_eda
from wikichurn.pipeline.eda.results import EdaResult
from wikichurn.pipeline.lakehouse.features import domain_metadata
from wikichurn.pipeline.lakehouse.run import run_pipeline

# MLflow's SQL store trips a SQLAlchemy deprecation warning on first use.
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*")

START = date(2024, 1, 15)  # a Monday
DAYS = 21  # three whole ISO weeks: Jan 15, 22, 29 (the last one ends on Sunday Feb 4)
INCOMPLETE_T = 16  # Wednesday 2024-01-31: only 20 of 24 hourly files
SPIKE_T = 11  # Friday 2024-01-26: `sp` jumps from 5 to 50 views per hour


def day(t: int) -> date:
    return START + timedelta(days=t)


def is_weekend(t: int) -> bool:
    return day(t).isoweekday() >= 6


def hourly_views(code: str, t: int) -> int | None:
    """Views per hour of ``code`` on day t; None = the domain is in no file that day."""
    if code in ("en", "de"):
        return 50 if code == "en" and is_weekend(t) else 100
    if t == 0:
        return None  # day 0 holds only en and de: shares 50/50
    if code == "fr.d":  # on 1-3, absent 4-5, on 6, an explicit zero on 7, on from 8
        return None if t in (4, 5) else 0 if t == 7 else 10
    if code == "sp":
        return 50 if t == SPIKE_T else 5
    if code == "es.m":
        return 40 if is_weekend(t) else 20
    if code == "col":  # collapses for good after day 6
        return 50 if t <= 6 else None
    raise KeyError(code)


CODES = ("en", "de", "fr.d", "sp", "es.m", "col")


def hours_of(t: int) -> range:
    return range(20) if t == INCOMPLETE_T else range(24)


def expected_daily() -> dict[str, dict[date, int]]:
    """Daily gold views per domain (only days with a gold row)."""
    out: dict[str, dict[date, int]] = {code: {} for code in CODES}
    for t in range(DAYS):
        for code in CODES:
            per_hour = hourly_views(code, t)
            if per_hour is not None:
                out[code][day(t)] = per_hour * len(hours_of(t))
    return out


def write_lake(settings: Settings) -> None:
    for t in range(DAYS):
        lines = [f"{c} - {hourly_views(c, t)} 0" for c in sorted(CODES) if hourly_views(c, t) is not None]
        for hour in hours_of(t):
            write_raw(settings, f"projectviews-{day(t):%Y%m%d}-{hour:02d}0000", lines)


@dataclass
class Built:
    settings: Settings
    result: EdaResult
    tmp: Path

    def table(self, name: str) -> list[dict]:
        return DeltaTable(f"{self.settings.lake_uri}/{name}").to_pyarrow_table().to_pylist()


@pytest.fixture(scope="module")
def built(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The hand-built lake, the pipeline, and one EDA run logged to a real local MLflow store."""
    tmp = tmp_path_factory.mktemp("eda")
    settings = Settings(
        raw_uri=str(tmp / "raw"),
        lake_uri=str(tmp / "lake"),
        mlflow_tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
    )
    write_lake(settings)
    run_pipeline(spark, settings)
    result = run_eda(spark, settings, tmp / "eda", mlflow_artifact_location=str(tmp / "mlartifacts"))
    yield Built(settings, result, tmp)


def by_date(rows: list[dict]) -> dict[date, dict]:
    return {r["event_date"]: r for r in rows}


def test_daily_views_active_domains_and_hhi(built: Built) -> None:
    daily = by_date(built.table(tables.GOLD_KPIS_DAILY))
    views = expected_daily()
    assert sorted(daily) == [day(t) for t in range(DAYS)]
    # Day 0: en and de only, 2,400 views each -> shares 1/2, 1/2.
    first = daily[day(0)]
    assert (first["total_views"], first["active_domains"]) == (4800, 2)
    assert first["hhi"] == pytest.approx(0.5) and first["diversity"] == pytest.approx(0.5)
    assert first["top10_share"] == pytest.approx(1.0)
    assert first["dayofweek"] == 1
    for t in range(DAYS):
        counts = [v[day(t)] for v in views.values() if v.get(day(t), 0) > 0]
        total = sum(counts)
        row = daily[day(t)]
        assert row["total_views"] == total
        assert row["active_domains"] == len(counts)
        assert row["hhi"] == pytest.approx(sum((c / total) ** 2 for c in counts))
        # Diversity as the chance that two views drawn at random belong to different domains.
        shares = [c / total for c in counts]
        different = sum(a * b for i, a in enumerate(shares) for j, b in enumerate(shares) if i != j)
        assert row["diversity"] == pytest.approx(different)
        assert row["top10_share"] == pytest.approx(sum(sorted(counts)[-10:]) / total)
    # Day 4 (Friday): fr.d absent; en 2400, de 2400, sp 120, es.m 480, col 1200.
    assert daily[day(4)]["active_domains"] == 5
    assert daily[day(4)]["hhi"] == pytest.approx((2 * 2400**2 + 120**2 + 480**2 + 1200**2) / 6600**2)


def expected_streaks() -> dict[str, dict[date, int]]:
    views = expected_daily()
    out: dict[str, dict[date, int]] = {}
    for code, series in views.items():
        first = min(d for d, v in series.items() if v > 0)
        run, out[code] = 0, {}
        for t in range((first - START).days, DAYS):
            run = run + 1 if series.get(day(t), 0) > 0 else 0
            out[code][day(t)] = run
    return out


def test_streaks_missing_and_zero_days_per_domain(built: Built) -> None:
    domains = {r["domain_code"]: r for r in built.table(tables.GOLD_KPIS_DOMAIN)}
    assert set(domains) == set(CODES)
    fr = domains["fr.d"]
    # fr.d: days 1-3 on, 4-5 absent, 7 an explicit zero, 6 and 8-20 on.
    assert (fr["first_seen"], fr["last_seen"]) == (day(1), day(20))
    assert (fr["calendar_days"], fr["active_days"], fr["missing_days"], fr["zero_view_days"]) == (20, 17, 2, 1)
    assert (fr["current_streak"], fr["longest_streak"]) == (13, 13)
    assert (fr["project_family"], fr["access"], fr["language"]) == ("wiktionary", "desktop", "fr")
    col = domains["col"]
    assert (col["last_seen"], col["missing_days"], col["current_streak"], col["longest_streak"]) == (day(6), 14, 0, 6)
    assert domains["en"]["current_streak"] == DAYS and domains["en"]["missing_days"] == 0
    assert domains["es.m"]["access"] == "mobile"
    assert domains["de"]["total_views"] == 20 * 2400 + 2000
    assert domains["de"]["mean_daily_views"] == pytest.approx((20 * 2400 + 2000) / DAYS)

    # Mean and median current streak over the domains active each day, against plain Python.
    streaks = expected_streaks()
    daily = by_date(built.table(tables.GOLD_KPIS_DAILY))
    for t in range(DAYS):
        active = [s[day(t)] for s in streaks.values() if s.get(day(t), 0) > 0]
        assert daily[day(t)]["mean_streak"] == pytest.approx(statistics.mean(active))
        assert daily[day(t)]["median_streak"] == pytest.approx(statistics.median(active))
    # Day 5 (Saturday): en 6, de 6, sp 5, es.m 5, col 5 (fr.d absent) -> median 5.
    assert daily[day(5)]["median_streak"] == 5.0 and daily[day(5)]["mean_streak"] == pytest.approx(27 / 5)


def test_planted_spike_found_and_nothing_on_flat_or_weekly_series(built: Built) -> None:
    spikes = built.table(tables.GOLD_QUALITY_SPIKES)
    assert [(r["domain_code"], r["event_date"]) for r in spikes] == [("sp", day(SPIKE_T))]
    spike = spikes[0]
    # Ten flat days of 120 before it: sd 0, floored at the Poisson noise sqrt(120).
    assert spike["count_views"] == 1200 and spike["baseline_mean"] == pytest.approx(120)
    assert spike["baseline_std"] == pytest.approx(0.0)
    assert spike["spike_threshold"] == pytest.approx(120 + 3 * math.sqrt(120))
    assert spike["ratio_to_baseline"] == pytest.approx(10.0)
    assert spike["excess_views"] == pytest.approx(1080.0)
    domains = {r["domain_code"]: r["spike_count"] for r in built.table(tables.GOLD_KPIS_DOMAIN)}
    assert domains == {"en": 0, "de": 0, "fr.d": 0, "sp": 1, "es.m": 0, "col": 0}


def test_hourly_completeness_flags_the_short_date(built: Built) -> None:
    daily = by_date(built.table(tables.GOLD_KPIS_DAILY))
    assert {d for d, r in daily.items() if r["incomplete"]} == {day(INCOMPLETE_T)}
    assert daily[day(INCOMPLETE_T)]["hours_present"] == 20
    assert {r["hours_present"] for d, r in daily.items() if d != day(INCOMPLETE_T)} == {24}
    assert built.result.incomplete_dates == 1


def test_weekly_and_monthly_sums_equal_daily_sums(built: Built) -> None:
    views = expected_daily()
    grand = sum(sum(series.values()) for series in views.values())
    for table, key in ((tables.GOLD_KPIS_WEEKLY, "week_start"), (tables.GOLD_KPIS_MONTHLY, "month_start")):
        rows = built.table(table)
        totals = [r for r in rows if r["level"] == "total"]
        assert all(r["domain_code"] is None for r in totals)
        assert sum(r["views"] for r in totals) == grand
        for code, series in views.items():
            assert sum(r["views"] for r in rows if r["domain_code"] == code) == sum(series.values())
        per_period = {r[key]: r for r in totals}
        if key == "week_start":
            assert sorted(per_period) == [date(2024, 1, 15), date(2024, 1, 22), date(2024, 1, 29)]
            assert all(r[key].isoweekday() == 1 for r in rows)
            week2 = sum(v for s in views.values() for d, v in s.items() if date(2024, 1, 22) <= d <= date(2024, 1, 28))
            assert per_period[date(2024, 1, 22)]["views"] == week2
            assert {(r["lake_days"], r["period_days"], r["partial"]) for r in totals} == {(7, 7, False)}
        else:
            assert sorted(per_period) == [date(2024, 1, 1), date(2024, 2, 1)]
            jan, feb = per_period[date(2024, 1, 1)], per_period[date(2024, 2, 1)]
            assert (jan["lake_days"], jan["period_days"], jan["partial"]) == (17, 31, True)
            assert (feb["lake_days"], feb["period_days"], feb["partial"]) == (4, 29, True)
            assert feb["views"] == sum(v for s in views.values() for d, v in s.items() if d.month == 2)


def test_weekday_means_by_access_over_complete_dates(built: Built, spark: SparkSession) -> None:
    frames = quirks.weekday_seasonality(
        spark.createDataFrame(
            [(c, v, 24, d) for c, s in expected_daily().items() for d, v in s.items()],
            "domain_code string, count_views long, hours_present int, event_date date",
        ),
        domain_metadata(spark, list(CODES)),
        spark.createDataFrame(
            [(day(t), 20 if t == INCOMPLETE_T else 24, t == INCOMPLETE_T) for t in range(DAYS)],
            "event_date date, hours_present int, incomplete boolean",
        ),
    )
    got = {(r["access"], r["dayofweek"]): (r["mean_views"], r["dates"]) for r in frames.collect()}
    # es.m (the only mobile domain): 480 on weekdays, 960 at weekends; absent on day 0 (a Monday).
    assert got[("mobile", 1)] == (480, 2)
    assert got[("mobile", 3)] == (480, 2)  # the incomplete Wednesday is left out
    assert got[("mobile", 6)] == (960, 3) and got[("mobile", 7)] == (960, 3)
    # Against plain Python, per access type and in total.
    views = expected_daily()
    for access in ("all", "desktop", "mobile"):
        codes = [c for c in CODES if access == "all" or parse_domain_code(c).access == access]
        for dow in range(1, 8):
            totals = [
                sum(views[c][day(t)] for c in codes if day(t) in views[c])
                for t in range(DAYS)
                if t != INCOMPLETE_T and day(t).isoweekday() == dow and any(day(t) in views[c] for c in codes)
            ]
            assert got[(access, dow)][0] == pytest.approx(statistics.mean(totals)), (access, dow)

    ratios = {r["access"]: r["weekend_weekday_ratio"] for r in quirks.weekend_ratio(frames).collect()}
    assert ratios["mobile"] == pytest.approx(2.0)
    assert built.result.weekend_weekday_ratio == pytest.approx(ratios["all"])


def test_churn_base_rate_over_time_and_by_family(built: Built) -> None:
    views = expected_daily()
    hours = {day(t): len(hours_of(t)) for t in range(DAYS)}
    labelled: dict[date, list[float]] = {}
    families: dict[str, list[float]] = {}
    for code, series in views.items():
        frame = domain_frame(series, built.settings.churn, domain_code=code, end_date=day(DAYS - 1), day_hours=hours)
        for row in frame[frame["label_available"]].itertuples():
            labelled.setdefault(row.event_date, []).append(row.churn)
            families.setdefault(parse_domain_code(code).project_family, []).append(row.churn)
    everything = [c for cs in labelled.values() for c in cs]
    assert len(everything) > 10 and 0 < sum(everything) < len(everything)  # col's collapse is in it

    daily = by_date(built.table(tables.GOLD_KPIS_DAILY))
    for d, row in daily.items():
        if d in labelled:
            assert row["churn_base_rate"] == pytest.approx(statistics.mean(labelled[d]))
            assert row["labelled_rows"] == len(labelled[d])
        else:
            assert row["churn_base_rate"] is None and row["labelled_rows"] == 0
    assert built.result.churn_base_rate == pytest.approx(statistics.mean(everything))
    assert built.result.labelled_rows == len(everything)
    report = built.result.report.read_text()
    for family, churns in families.items():
        assert f"<td>{family}</td><td>{statistics.mean(churns):.1%}</td>" in report
    domains = {r["domain_code"]: r for r in built.table(tables.GOLD_KPIS_DOMAIN)}
    assert domains["col"]["churn_base_rate"] == pytest.approx(1.0)


def test_report_embeds_every_plot_and_every_png_is_real(built: Built) -> None:
    result = built.result
    assert set(result.plots) == set(plots.PLOT_FILES)
    for path in result.plots.values():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, path
    page = result.report.read_text(encoding="utf-8")
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(embedded) == len(result.plots)
    assert {base64.b64decode(e) for e in embedded} == {p.read_bytes() for p in result.plots.values()}
    assert "src='plots" not in page and 'src="plots' not in page  # nothing refers to files next to it
    assert "2024-01-31" in page and "Incomplete dates" in page  # the quirk tables
    assert "<td>sp</td><td>2024-01-26</td>" in page
    assert result.tables == {
        tables.GOLD_KPIS_DAILY: DAYS,
        tables.GOLD_KPIS_DOMAIN: len(CODES),
        tables.GOLD_KPIS_WEEKLY: len(built.table(tables.GOLD_KPIS_WEEKLY)),
        tables.GOLD_KPIS_MONTHLY: len(built.table(tables.GOLD_KPIS_MONTHLY)),
        tables.GOLD_QUALITY_SPIKES: 1,
    }
    assert result.median_hhi is not None and 0 < result.median_hhi < 1
    text = result.describe()
    assert "1 incomplete dates" in text and "mlflow: run" in text
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["spikes"] == 1 and as_json["dates"] == DAYS and as_json["report"] == str(result.report)


def test_report_and_plots_are_logged_to_mlflow(built: Built) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=built.settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(results.EDA_EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [built.result.mlflow_run_id]
    run = runs[0]
    assert run.info.run_name == results.EDA_RUN_NAME and run.info.status == "FINISHED"
    assert run.data.metrics["churn_base_rate"] == pytest.approx(built.result.churn_base_rate)
    assert run.data.metrics["incomplete_dates"] == 1.0
    assert run.data.metrics["median_hhi"] == pytest.approx(built.result.median_hhi)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert top == {results.REPORT_NAME, results.PLOTS_FOLDER}
    logged = {a.path for a in client.list_artifacts(run.info.run_id, results.PLOTS_FOLDER)}
    assert logged == {f"{results.PLOTS_FOLDER}/{name}" for name in plots.PLOT_FILES.values()}
    # The artifacts are real files under the artifact root the test chose.
    stored = list((built.tmp / "mlartifacts").rglob(results.REPORT_NAME))
    assert len(stored) == 1 and stored[0].read_bytes() == built.result.report.read_bytes()


def test_tiny_lake_without_labels_or_mlflow(
    spark: SparkSession, lake_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two short days: no complete date, no label, no spike history; nothing is logged."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lake_settings = lake_settings.model_copy(update={"mlflow_tracking_uri": None})
    for hour in range(3):
        write_raw(lake_settings, f"projectviews-20240101-{hour:02d}0000", ["en - 5 0", "de.m - 1 0"])
    write_raw(lake_settings, "projectviews-20240103-000000", ["en - 7 0"])  # 2024-01-02 has no file at all
    run_pipeline(spark, lake_settings)

    result = run_eda(spark, lake_settings, tmp_path / "out")

    assert result.mlflow_run_id is None
    assert result.churn_base_rate is None and result.labelled_rows == 0 and result.spikes == 0
    daily = by_date(DeltaTable(f"{lake_settings.lake_uri}/{tables.GOLD_KPIS_DAILY}").to_pyarrow_table().to_pylist())
    gap = daily[date(2024, 1, 2)]
    assert (gap["hours_present"], gap["incomplete"], gap["total_views"], gap["hhi"]) == (0, True, 0, None)
    assert result.incomplete_dates == 3 and result.dates == 3
    domains = {
        r["domain_code"]: r
        for r in DeltaTable(f"{lake_settings.lake_uri}/{tables.GOLD_KPIS_DOMAIN}").to_pyarrow_table().to_pylist()
    }
    assert (domains["de.m"]["missing_days"], domains["de.m"]["current_streak"]) == (2, 0)
    assert (domains["en"]["missing_days"], domains["en"]["current_streak"]) == (1, 1)
    assert all(p.stat().st_size > 5_000 for p in result.plots.values())
    assert result.report.is_file()


def test_flat_series_has_zero_deviation_and_no_spike(spark: SparkSession) -> None:
    rows = [("flat", 1_000_000, 24, START + timedelta(days=t)) for t in range(40)]
    rows += [("tiny", 1 if t != 30 else 2, 24, START + timedelta(days=t)) for t in range(40)]
    gold = spark.createDataFrame(rows, "domain_code string, count_views long, hours_present int, event_date date")
    calendar = kpis.lake_calendar(gold)
    got = quirks.with_spikes(kpis.dense_domain_days(gold, calendar), SpikeRule()).collect()
    assert not any(r["is_spike"] for r in got)  # `tiny` doubling from 1 to 2 is within Poisson noise
    stds = [r["baseline_std"] for r in got if r["domain_code"] == "flat" and r["baseline_std"] is not None]
    assert stds and all(s == 0.0 for s in stds)  # 0, not NaN, on a constant window
    without_floor = quirks.with_spikes(kpis.dense_domain_days(gold, calendar), SpikeRule(poisson_floor=False))
    assert [(r["domain_code"], r["event_date"]) for r in without_floor.where("is_spike").collect()] == [
        ("tiny", START + timedelta(days=30))
    ]


def test_run_eda_needs_gold(spark: SparkSession, lake_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pipeline run"):
        run_eda(spark, lake_settings, tmp_path / "out")
