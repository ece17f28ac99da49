"""Forward backtest: monthly cut-offs, train through the project's training code on what was known
at each cut-off, score the following month.

A mirror (a replay of real daily totals, :mod:`wikichurn.sim.replay`, or a simulation) goes
through the whole product once: served over local HTTP, ingested, bronze -> silver -> gold ->
``gold_churn_features``. Features of day t use days <= t only, so one lake serves every
cut-off: at cut-off c the rows known to be labelled are those whose label window ended before c
(``event_date + horizon < c``), exactly the labelled rows a lake built up to day c - 1 holds.
For each window, :func:`wikichurn.training.train.run_training` runs on those rows (walk-forward
tuning, refits, baselines), and the three registered models (tuned, seed-feature baseline,
heuristic) score the labelled rows of the month starting at c.

MLflow: a parent run (``wikichurn.role=backtest``) with one child per window; each child *is*
that window's tuned run (its trials nested below it, its baseline runs re-parented under it),
carrying ``window_<scorer>_pr_auc`` / ``_roc_auc`` so the UI's comparison view lines them up.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from wikichurn.core.tables import GOLD_FEATURES
from wikichurn.training.baselines import heuristic_features, heuristic_score, load_any_scorer
from wikichurn.training.config import TrainingSettings
from wikichurn.training.data import LABEL, FeatureData
from wikichurn.training.metrics import metric_spec
from wikichurn.training.tracking import (
    BUNDLE_DIR,
    ROLE_HEURISTIC,
    ROLE_SEED,
    ROLE_TUNED,
    TAG_ROLE,
    configure_tracking,
    download_run_artifacts,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wikichurn.core.settings import Settings

log = logging.getLogger(__name__)

SCORERS: tuple[str, str, str] = (ROLE_TUNED, ROLE_SEED, ROLE_HEURISTIC)
SHORT = {ROLE_TUNED: "tuned", ROLE_SEED: "seed", ROLE_HEURISTIC: "heuristic"}
TAG_BACKTEST = "wikichurn.backtest_id"


@dataclass(frozen=True)
class Window:
    """One forward window: train on labels known before ``cutoff``, score ``cutoff`` .. ``end``."""

    cutoff: pd.Timestamp
    end: pd.Timestamp  # inclusive

    @property
    def name(self) -> str:
        return f"{self.cutoff:%Y-%m}"


def monthly_windows(frame: pd.DataFrame, windows: int) -> list[Window]:
    """The last ``windows`` calendar months holding labelled rows, oldest first."""
    months = pd.to_datetime(frame["event_date"]).dt.to_period("M").drop_duplicates().sort_values()
    chosen = list(months)[-windows:]
    if len(chosen) < windows:
        raise ValueError(f"only {len(chosen)} months of labelled rows for {windows} windows")
    return [Window(m.start_time, m.end_time.normalize()) for m in chosen]


def known_at(frame: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """The labelled rows a lake built up to ``cutoff - 1 day`` holds: label windows ended before it."""
    return frame.loc[frame["event_date"] + pd.Timedelta(days=horizon_days) < cutoff].reset_index(drop=True)


def window_rows(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    """The labelled rows dated inside ``window``."""
    dates = frame["event_date"]
    return frame.loc[(dates >= window.cutoff) & (dates <= window.end)].reset_index(drop=True)


@dataclass
class BacktestResult:
    """Per-window and mean ROC AUC / PR AUC of the three scorers."""

    run_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> pd.DataFrame:
        """One row per window plus the mean."""
        frame = pd.DataFrame(self.rows)
        metrics = [c for c in frame.columns if c.endswith(("_pr_auc", "_roc_auc"))]
        mean = frame[metrics].mean().to_dict() | {"window": "mean"}
        return pd.concat([frame, pd.DataFrame([mean])], ignore_index=True)

    def summary(self) -> dict[str, Any]:
        """JSON-safe: windows, means, and the goal's check (tuned vs seed PR AUC)."""
        table = self.table()
        mean = table.iloc[-1]
        margins = [r["tuned_pr_auc"] - r["seed_pr_auc"] for r in self.rows]
        return {
            "run_id": self.run_id,
            "windows": self.rows,
            "mean": {k: float(v) for k, v in mean.items() if k.endswith("_auc")},
            "tuned_beats_seed_every_window": all(m > 0 for m in margins),
            "mean_pr_auc_margin_over_seed": float(np.mean(margins)),
            "seconds": self.seconds,
        }


def run_backtest(
    data: FeatureData,
    cfg: TrainingSettings,
    settings: Settings,
    *,
    windows: int = 6,
    name: str = "backtest",
    params: dict[str, Any] | None = None,
) -> BacktestResult:
    """Train at each monthly cut-off and score the following month (see the module docstring).

    Args:
        data: every labelled feature row of the lake (``load_feature_data``).
        cfg: training settings (trials, CV, tracking, experiment).
        settings: the churn definition (its horizon decides which labels are known at a cut-off).
        windows: number of monthly windows, the last ones of the data.
        name: the parent run's name.
        params: extra params logged on the parent run (data source, subset, ...).

    Returns:
        The parent run id and one row of metrics per window.
    """
    from wikichurn.training.train import run_training

    started = time.monotonic()
    if not cfg.num_threads:
        # Backtest frames are small (thousands of rows): one LightGBM thread is as fast, and
        # OpenMP threads spinning against busy neighbours made fits tens of times slower.
        cfg = cfg.model_copy(update={"num_threads": 1})
    experiment_id = configure_tracking(cfg)
    client = MlflowClient()
    horizon = settings.churn.horizon_days
    spec = metric_spec("pr_auc")
    roc = metric_spec("roc_auc")
    plan = monthly_windows(data.frame, windows)
    parent = client.create_run(experiment_id, run_name=name, tags={TAG_ROLE: "backtest"})
    parent_id = parent.info.run_id
    client.log_param(parent_id, "windows", json.dumps([f"{w.cutoff.date()}..{w.end.date()}" for w in plan]))
    client.log_param(parent_id, "trials", cfg.tuning.trials)
    for key, value in (params or {}).items():
        client.log_param(parent_id, key, str(value)[:6000])
    result = BacktestResult(run_id=parent_id)
    try:
        for window in plan:
            train_rows = known_at(data.frame, window.cutoff, horizon)
            scored = window_rows(data.frame, window)
            child = client.create_run(
                experiment_id,
                run_name=f"window-{window.name}",
                tags={"mlflow.parentRunId": parent_id, TAG_BACKTEST: parent_id},
            )
            trained = run_training(
                cfg,
                settings,
                data=FeatureData(train_rows, data.table, data.location, data.version),
                run_id=child.info.run_id,
            )
            client.set_tag(child.info.run_id, "mlflow.runName", f"window-{window.name}")  # training renamed it
            for rid in trained.baseline_run_ids.values():
                client.set_tag(rid, "mlflow.parentRunId", child.info.run_id)
                client.set_tag(rid, TAG_BACKTEST, parent_id)
            y = scored[LABEL].to_numpy(dtype="int64")
            scores = _window_scores(trained.run_id, trained.baseline_run_ids, scored, settings.churn.window_days)
            row: dict[str, Any] = {
                "window": window.name,
                "cutoff": str(window.cutoff.date()),
                "train_rows": len(train_rows),
                "window_rows": len(scored),
                "window_positives": int(y.sum()),
            }
            for role in SCORERS:
                row[f"{SHORT[role]}_pr_auc"] = spec.compute(y, scores[role])
                row[f"{SHORT[role]}_roc_auc"] = roc.compute(y, scores[role])
            client.log_batch(
                child.info.run_id,
                metrics=[
                    mlflow.entities.Metric(f"window_{k}", float(v), int(time.time() * 1000), 0)
                    for k, v in row.items()
                    if k.endswith(("_auc", "_rows", "_positives"))
                ],
            )
            client.set_tag(child.info.run_id, "wikichurn.window", f"{window.cutoff.date()}..{window.end.date()}")
            log.info(
                "window %s: PR AUC tuned %.4f, seed %.4f, heuristic %.4f",
                window.name,
                row["tuned_pr_auc"],
                row["seed_pr_auc"],
                row["heuristic_pr_auc"],
            )
            result.rows.append(row)
        mean = result.table().iloc[-1]
        for key, value in mean.items():
            if key != "window" and isinstance(value, (int, float)) and np.isfinite(value):
                client.log_metric(parent_id, f"mean_{key}", float(value))
        summary = result.summary()
        client.log_metric(parent_id, "mean_pr_auc_margin_over_seed", summary["mean_pr_auc_margin_over_seed"])
        every = str(summary["tuned_beats_seed_every_window"])
        client.set_tag(parent_id, "wikichurn.tuned_beats_seed_every_window", every)
        client.set_terminated(parent_id, "FINISHED")
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    result.seconds = time.monotonic() - started
    return result


def _window_scores(
    run_id: str, baselines: dict[str, str], rows: pd.DataFrame, window_days: int
) -> dict[str, np.ndarray]:
    """Scores of the three registered models (the refits on everything known) on ``rows``."""
    with tempfile.TemporaryDirectory(prefix="wikichurn-backtest-") as tmp:
        out = {}
        for role, rid in {ROLE_TUNED: run_id, ROLE_SEED: baselines[ROLE_SEED]}.items():
            scorer = load_any_scorer(download_run_artifacts(rid, BUNDLE_DIR, Path(tmp) / role))
            out[role] = np.asarray(scorer.predict_proba(rows), dtype="float64")
    out[ROLE_HEURISTIC] = heuristic_score(rows, heuristic_features(window_days))
    return out


def lake_from_mirror(
    mirror: Path, work: Path, first: date, last: date, spark: SparkSession | None = None
) -> tuple[Settings, FeatureData]:
    """Serve ``mirror`` over local HTTP, ingest ``first`` .. ``last``, run the pipeline into
    ``work/lake`` and read the labelled feature rows."""
    from wikichurn.core.settings import Settings
    from wikichurn.pipeline.ingest.land import ingest
    from wikichurn.pipeline.lakehouse.run import run_pipeline
    from wikichurn.pipeline.spark import build_spark
    from wikichurn.sim.mirror import serve_mirror
    from wikichurn.training.data import load_feature_data

    # Replayed projectcounts-era days (2008-2015) predate the projectviews dumps' first hour.
    settings = Settings(raw_uri=str(work / "raw"), lake_uri=str(work / "lake"))
    first_hour = datetime.combine(first, datetime.min.time())
    settings = settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"first_file_hour": first_hour})}
    )
    with serve_mirror(mirror) as url:
        landed = ingest(url, settings.raw_uri, first, last, settings)
    if landed.failed:
        raise RuntimeError(f"ingest failed for {landed.failed} files of {mirror}")
    if spark is None:
        with build_spark(settings) as session:
            run_pipeline(session, settings)
            return settings, load_feature_data(settings, GOLD_FEATURES, session)
    run_pipeline(spark, settings)
    return settings, load_feature_data(settings, GOLD_FEATURES, spark)


def backtest_daily(
    daily: Path,
    work: Path,
    cfg: TrainingSettings,
    *,
    windows: int = 6,
    wikis: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    seed: int = 0,
) -> BacktestResult:
    """Replay real daily totals into ``work/mirror``, build the lake, and run :func:`run_backtest`."""
    from wikichurn.sim.replay import replay

    summary = replay(daily, work / "mirror", start=start, end=end, wikis=wikis, seed=seed)
    log.info("replayed %s codes, %s hourly files", len(summary.codes), f"{summary.files:,}")
    settings, data = lake_from_mirror(work / "mirror", work, summary.start, summary.end)
    source = {
        "source": "replay of real daily totals",
        "daily_dir": str(daily),
        "wikis": ",".join(sorted(p.stem for p in Path(daily).glob("*.csv") if wikis is None or p.stem in wikis)),
        "days": f"{summary.start}..{summary.end}",
        "codes": len(summary.codes),
        "labelled_rows": len(data.frame),
    }
    return run_backtest(data, cfg, settings, windows=windows, name="backtest-real", params=source)


def backtest_simulated(
    work: Path,
    cfg: TrainingSettings,
    *,
    start: date,
    end: date,
    domains: int = 150,
    seed: int = 0,
    windows: int = 6,
) -> BacktestResult:
    """The same backtest on a simulated mirror (for the side-by-side with real data)."""
    from wikichurn.sim.simulate import simulate

    simulate(work / "mirror", start, end, domains=domains, seed=seed)
    settings, data = lake_from_mirror(work / "mirror", work, start, end)
    source = {"source": "simulation", "days": f"{start}..{end}", "domains": domains, "seed": seed}
    source["labelled_rows"] = len(data.frame)
    return run_backtest(data, cfg, settings, windows=windows, name="backtest-simulated", params=source)
