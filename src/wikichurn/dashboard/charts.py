"""Altair charts of the dashboard: every chart has a title, axis titles with units, and a log scale
where the values span orders of magnitude (views across domains and days)."""

from __future__ import annotations

import altair as alt
import pandas as pd

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
HEIGHT = 300


def _title(text: str, subtitle: str | None = None) -> alt.TitleParams:
    return alt.TitleParams(text, subtitle=subtitle or "", anchor="start", fontSize=15, offset=8)


def risk_ranking(top: pd.DataFrame, threshold: float, day: str) -> alt.TopLevelMixin:
    """Horizontal bars of the riskiest domains, with the model's threshold as a rule."""
    frame = top.assign(flag=top["churn"].map({True: "flagged", False: "below threshold"}))
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("domain_code:N", sort="-x", title="domain", axis=alt.Axis(labelOverlap=False, labelLimit=160)),
            x=alt.X(
                "risk_score:Q",
                title="risk score (probability of a collapse within the horizon)",
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "flag:N",
                scale=alt.Scale(domain=["flagged", "below threshold"], range=["#d62728", "#7f9fbf"]),
                legend=alt.Legend(title=None, orient="bottom", labelLimit=400),
            ),
            tooltip=["rank", "domain_code", alt.Tooltip("risk_score:Q", format=".3f"), "count_views"],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="black", strokeDash=[6, 3], size=2)
        .encode(x="threshold:Q")
    )
    height = max(160, 22 * len(top))
    return alt.layer(bars.properties(height=height), rule.properties(height=height)).properties(
        title=_title(f"Riskiest domains on {day}", f"dashed line: the model's churn threshold ({threshold:.3f})"),
    )


def view_history(history: pd.DataFrame, domain: str, window: int, factor: float) -> alt.TopLevelMixin:
    """Daily views, their trailing mean and the churn threshold (symlog: zeros stay on the chart)."""
    long = history.melt("event_date", ["views", "past_mean", "threshold"], var_name="series", value_name="value")
    names = {
        "views": "daily views",
        "past_mean": f"mean of the {window} days before",
        "threshold": f"churn threshold ({factor:g} x that mean)",
    }
    long["series"] = long["series"].map(names)
    return (
        alt.Chart(long.dropna())
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("event_date:T", title="date (UTC)"),
            y=alt.Y("value:Q", title="views per day (symlog scale)", scale=alt.Scale(type="symlog")),
            color=alt.Color(
                "series:N",
                scale=alt.Scale(domain=list(names.values()), range=["#1f77b4", "#ff7f0e", "#d62728"]),
                legend=alt.Legend(title=None, orient="bottom", labelLimit=400),
            ),
            strokeDash=alt.StrokeDash(
                "series:N", legend=None, scale=alt.Scale(domain=list(names.values()), range=[[1, 0], [4, 2], [6, 3]])
            ),
            tooltip=[alt.Tooltip("event_date:T", title="date"), "series:N", alt.Tooltip("value:Q", format=",.0f")],
        )
        .properties(title=_title(f"{domain}: daily views, last {len(history)} days"), height=HEIGHT)
    )


def risk_history(history: pd.DataFrame, domain: str, threshold: float) -> alt.TopLevelMixin:
    """How the domain's risk score moved, with the threshold."""
    line = (
        alt.Chart(history)
        .mark_line(point=True, color="#d62728")
        .encode(
            x=alt.X("event_date:T", title="date (UTC)"),
            y=alt.Y("risk_score:Q", title="risk score (0-1)", scale=alt.Scale(domain=[0, 1])),
            tooltip=[alt.Tooltip("event_date:T", title="date"), alt.Tooltip("risk_score:Q", format=".3f")],
        )
    )
    rule = alt.Chart(pd.DataFrame({"t": [threshold]})).mark_rule(strokeDash=[6, 3]).encode(y="t:Q")
    return alt.layer(line, rule).properties(
        title=_title(f"{domain}: risk over the last {len(history)} scored days", "dashed line: threshold"),
        height=HEIGHT,
    )


def time_series(
    frame: pd.DataFrame,
    x: str,
    y: str,
    title: str,
    y_title: str,
    *,
    log: bool = False,
    x_title: str = "date (UTC)",
    mark: str = "line",
) -> alt.TopLevelMixin:
    """One measure over time."""
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    chart = alt.Chart(frame)
    # Bars start at zero, which a log scale cannot show: log charts are lines with points.
    chart = chart.mark_bar() if mark == "bar" and not log else chart.mark_line(point=alt.OverlayMarkDef(size=30))
    return chart.encode(
        x=alt.X(f"{x}:T", title=x_title),
        y=alt.Y(f"{y}:Q", title=y_title, scale=scale),
        tooltip=[alt.Tooltip(f"{x}:T"), alt.Tooltip(f"{y}:Q", format=",.4g")],
    ).properties(title=_title(title), height=HEIGHT - 60)


def seasonality(frame: pd.DataFrame) -> alt.TopLevelMixin:
    """Mean daily views per weekday, one line per access type (log: access types differ 100x)."""
    frame = frame.assign(weekday=frame["dayofweek"].map(lambda d: WEEKDAYS[int(d) - 1]))
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("weekday:N", sort=WEEKDAYS, title="day of week"),
            y=alt.Y("mean_views:Q", title="mean views per day (log scale)", scale=alt.Scale(type="log")),
            color=alt.Color("access:N", title="access"),
            tooltip=["access", "weekday", alt.Tooltip("mean_views:Q", format=",.0f")],
        )
        .properties(title=_title("Weekday seasonality", "mean daily views over complete days"), height=HEIGHT - 40)
    )


def completeness_calendar(frame: pd.DataFrame) -> alt.TopLevelMixin:
    """Calendar heat map: one cell per date (week x weekday), colour = hourly files present."""
    return (
        alt.Chart(frame)
        .mark_rect(stroke="white")
        .encode(
            x=alt.X("week_start:O", title="week starting (Monday)", axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("weekday:N", sort=WEEKDAYS, title="day of week"),
            color=alt.Color(
                "hours_present:Q",
                title="hourly files (of 24)",
                # One missing hour must stand out against a complete day: 23 is already orange.
                scale=alt.Scale(domain=[0, 12, 23, 24], range=["#b2182b", "#ef8a62", "#fdae61", "#1a9850"]),
            ),
            tooltip=[alt.Tooltip("event_date:T", title="date"), "hours_present:Q"],
        )
        .properties(title=_title("Hourly completeness per date", "green: all 24 hourly files landed"), height=230)
    )


def quarantine_by_run(runs: pd.DataFrame) -> alt.TopLevelMixin:
    """Quarantined rows per run, stacked by DQ reason."""
    reasons = [c for c in runs.columns if c.startswith("q_")]
    long = runs.melt(["run_id", "run_at"], reasons, var_name="dq_reason", value_name="rows")
    long["dq_reason"] = long["dq_reason"].str.removeprefix("q_")
    long["run"] = long["run_at"].dt.strftime("%m-%d %H:%M:%S") + " " + long["run_id"].str[:6]
    return (
        alt.Chart(long[long["rows"] > 0])
        .mark_bar()
        .encode(
            x=alt.X("run:N", title="pipeline run (UTC start, id)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rows:Q", title="quarantined rows"),
            color=alt.Color("dq_reason:N", title="dq_reason"),
            tooltip=["run", "dq_reason", "rows"],
        )
        .properties(title=_title("Quarantined rows per run, by reason"), height=HEIGHT - 40)
    )


def flagged_per_day(frame: pd.DataFrame, version: str) -> alt.TopLevelMixin:
    """Domains the model flagged per scored day."""
    return (
        alt.Chart(frame)
        .mark_bar(color="#d62728")
        .encode(
            x=alt.X("event_date:T", title="scored day (UTC)"),
            y=alt.Y("flagged:Q", title="domains flagged (churn at threshold)"),
            tooltip=[alt.Tooltip("event_date:T", title="day"), "flagged", "scored"],
        )
        .properties(title=_title(f"Domains flagged per day by version {version}"), height=HEIGHT - 60)
    )
