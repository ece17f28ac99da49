"""What the EDA produces: the names of its tables and files, :class:`EdaResult` (paths, row counts
and headline numbers of one run) and :class:`EdaFrames` (the small pandas aggregates the plots
and the HTML report are drawn from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wikichurn.core.tables import (
    GOLD_KPIS_DAILY,
    GOLD_KPIS_DOMAIN,
    GOLD_KPIS_MONTHLY,
    GOLD_KPIS_WEEKLY,
    GOLD_QUALITY_SPIKES,
)

if TYPE_CHECKING:
    import pandas as pd

EDA_TABLES: tuple[str, ...] = (
    GOLD_KPIS_DAILY,
    GOLD_KPIS_DOMAIN,
    GOLD_KPIS_WEEKLY,
    GOLD_KPIS_MONTHLY,
    GOLD_QUALITY_SPIKES,
)
EDA_EXPERIMENT = "wikichurn-eda"
EDA_RUN_NAME = "eda"
REPORT_NAME = "report.html"
PLOTS_FOLDER = "plots"


def isnan(value: float | int) -> bool:
    """True for a float NaN (ints never are)."""
    return isinstance(value, float) and math.isnan(value)


# The headline numbers logged as MLflow metrics.
_METRICS = (
    "churn_base_rate",
    "labelled_rows",
    "median_hhi",
    "incomplete_dates",
    "spikes",
    "weekend_weekday_ratio",
    "dates",
    "domains",
    "total_views",
)


@dataclass
class EdaResult:
    """What :func:`run_eda` wrote and found."""

    out_dir: Path
    report: Path
    plots: dict[str, Path]
    tables: dict[str, int]
    first_date: str | None
    last_date: str | None
    dates: int
    domains: int
    total_views: int
    churn_base_rate: float | None
    labelled_rows: int
    median_hhi: float | None
    incomplete_dates: int
    spikes: int
    weekend_weekday_ratio: float | None
    mlflow_run_id: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Headline numbers as MLflow metrics (None left out)."""
        values: dict[str, float | int | None] = {name: getattr(self, name) for name in _METRICS}
        return {k: float(v) for k, v in values.items() if v is not None and not isnan(v)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output)."""
        return {
            "out_dir": str(self.out_dir),
            "report": str(self.report),
            "plots": {name: str(path) for name, path in self.plots.items()},
            "tables": dict(self.tables),
            "first_date": self.first_date,
            "last_date": self.last_date,
            "dates": self.dates,
            "domains": self.domains,
            "total_views": self.total_views,
            "churn_base_rate": self.churn_base_rate,
            "labelled_rows": self.labelled_rows,
            "median_hhi": self.median_hhi,
            "incomplete_dates": self.incomplete_dates,
            "spikes": self.spikes,
            "weekend_weekday_ratio": self.weekend_weekday_ratio,
            "mlflow_run_id": self.mlflow_run_id,
            "seconds": round(self.seconds, 2),
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        """A short human summary."""
        rate = "n/a" if self.churn_base_rate is None else f"{self.churn_base_rate:.1%}"
        hhi = "n/a" if self.median_hhi is None else f"{self.median_hhi:.3f}"
        ratio = "n/a" if self.weekend_weekday_ratio is None else f"{self.weekend_weekday_ratio:.2f}"
        counts = ", ".join(f"{name} {rows:,}" for name, rows in self.tables.items())
        lines = [
            f"EDA of {self.dates} dates ({self.first_date} .. {self.last_date}), {self.domains:,} domains, "
            f"{self.total_views:,} views",
            f"churn base rate {rate} over {self.labelled_rows:,} labelled rows; median daily HHI {hhi}; "
            f"weekend/weekday views {ratio}; {self.incomplete_dates} incomplete dates; {self.spikes} spikes",
            f"tables: {counts}",
            f"report: {self.report} ({len(self.plots)} plots in {self.report.parent / PLOTS_FOLDER})",
        ]
        if self.mlflow_run_id:
            lines.append(f"mlflow: run {self.mlflow_run_id} in experiment {EDA_EXPERIMENT}")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(f"{self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass
class EdaFrames:
    """The small aggregates the plots and the report are drawn from (pandas)."""

    daily: pd.DataFrame
    domains: pd.DataFrame
    weekly: pd.DataFrame
    monthly: pd.DataFrame
    spikes: pd.DataFrame
    seasonality: pd.DataFrame
    weekend: pd.DataFrame
    churn_family: pd.DataFrame
    spike_series: pd.DataFrame
    top_domains: list[str]
