"""The EDA's one self-contained HTML page: headline cards, the quirks found (incomplete dates,
top spikes, domains with missing days, weekend / weekday ratios), every plot embedded as base64
PNG with a paragraph saying how it is computed, and the row counts of the KPI tables.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wikichurn.pipeline.eda.charts import human
from wikichurn.pipeline.eda.quirks import SpikeRule

if TYPE_CHECKING:
    import pandas as pd

    from wikichurn.core.settings import Settings
    from wikichurn.pipeline.eda.results import EdaFrames, EdaResult

_SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "total_daily_views",
        "Total daily views",
        "Sum of <code>count_views</code> over every domain per UTC date (views per day; the "
        "'daily active users' of this data set, counted in views). Log scale. Red crosses mark "
        "incomplete dates, which read low only because hourly files are missing.",
    ),
    (
        "weekly_monthly_views",
        "Weekly and monthly views",
        "Views summed per ISO week (Monday start) and per calendar month, in total (bars) and for "
        "the five biggest domains (lines). Hatched bars are partial periods at the edges of the "
        "lake, which are short by construction.",
    ),
    (
        "active_domains",
        "Active domains",
        "Domains with at least one view on the date. A drop that coincides with an incomplete date "
        "is a data gap, not churn.",
    ),
    (
        "concentration",
        "Concentration",
        "HHI = sum over domains of (domain's share of the day's views)<sup>2</sup>: 1 when one "
        "domain has every view, 1/n when n domains are equal. Diversity = 1 - HHI. The top-10 "
        "share is the share of the ten biggest domains that day.",
    ),
    (
        "streaks",
        "Streaks",
        "For every domain and day: the number of consecutive days up to that day with views > 0 "
        "(a day the domain is absent from counts as 0 views). Mean and median over the domains "
        "active that day. Streaks cannot be longer than the lake, so both grow with its age.",
    ),
    (
        "weekday_seasonality",
        "Weekday seasonality",
        "Mean daily views per ISO day of week over complete dates, for all domains and per access "
        "type (desktop / mobile, parsed from the domain code). Left: relative to that access "
        "type's weekly mean; the legend gives the weekend / weekday ratio (mean of the Sat and Sun "
        "means over the mean of the Mon..Fri means).",
    ),
    (
        "domain_sizes",
        "Domain sizes",
        "Mean daily views of each domain over its calendar (first day with views to the lake's "
        "last day, absent days as 0): a log-log histogram and a rank-size plot. Sizes span many "
        "orders of magnitude.",
    ),
    (
        "completeness",
        "Hourly completeness",
        "Distinct hourly files per date in the bronze ledger (a file with no lines still counts). "
        "24 is complete; red bars are incomplete dates, whose churn labels the strict policy "
        "marks unavailable.",
    ),
    (
        "missing_zero_days",
        "Missing and zero-view days",
        "Over each domain's calendar: <em>missing</em> days have no gold row (the domain is in no "
        "hourly file that day), <em>zero-view</em> days have a row that says 0 views. Both count "
        "as 0 views for streaks and churn.",
    ),
    (
        "spikes",
        "Spikes",
        "A day is a spike when its views exceed the mean + k standard deviations of the domain's "
        "trailing window (the day itself excluded; the deviation is floored at the Poisson noise "
        "sqrt(mean)). Shown: the biggest domains with at least one spike.",
    ),
    (
        "churn_base_rate",
        "Churn base rate",
        "Share of labelled domain-days (<code>label_available</code>) with <code>churn = 1</code> in "
        "<code>gold_churn_features</code>, per date and per project family.",
    ),
)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.4em}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
"""


def _fmt(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "float":
        return f"{float(value):,.2f}"
    if kind == "float3":
        return f"{float(value):.3f}"
    return html.escape(str(value))


def _table(df: pd.DataFrame, columns: Sequence[tuple[str, str, str]], empty: str, limit: int = 15) -> str:
    """An HTML table of ``df``'s ``(column, header, kind)`` columns, at most ``limit`` rows."""
    if df is None or df.empty:
        return f"<p class='muted'>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(header)}</th>" for _c, header, _k in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row[c], k)}</td>" for c, _h, k in columns) + "</tr>"
        for _i, row in df.head(limit).iterrows()
    )
    more = f"<p class='muted'>… and {len(df) - limit:,} more.</p>" if len(df) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def write_report(
    frames: EdaFrames,
    result: EdaResult,
    path: Path,
    *,
    settings: Settings | None = None,
    spike_rule: SpikeRule = SpikeRule(),
) -> Path:
    """Write one self-contained HTML page (plots embedded as base64 PNG) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    daily, domains = frames.daily, frames.domains
    rate = _fmt(result.churn_base_rate, "pct")
    cards = [
        ("dates", f"{result.dates:,}", f"{result.first_date} .. {result.last_date}"),
        ("domains", f"{result.domains:,}", "in gold"),
        ("total views", human(result.total_views), "over the whole lake"),
        ("churn base rate", rate, f"over {result.labelled_rows:,} labelled rows"),
        ("median daily HHI", _fmt(result.median_hhi, "float3"), "1/n for n equal domains"),
        ("incomplete dates", f"{result.incomplete_dates:,}", "fewer hourly files than needed"),
        ("spikes", f"{result.spikes:,}", f"> mean + {spike_rule.k_sigma:g} sd, {spike_rule.window_days} days"),
        ("weekend / weekday", _fmt(result.weekend_weekday_ratio, "float3"), "mean views ratio, all domains"),
    ]
    card_html = "".join(
        f"<div class='card'><span class='muted'>{html.escape(t)}</span><b>{html.escape(v)}</b>"
        f"<span class='muted'>{html.escape(s)}</span></div>"
        for t, v, s in cards
    )
    incomplete = daily[daily["incomplete"]].sort_values("event_date") if len(daily) else daily
    missing = domains[domains["missing_days"] > 0].sort_values(
        ["missing_days", "total_views"], ascending=[False, False]
    )
    quirks = [
        "<h3>Incomplete dates</h3>",
        _table(
            incomplete,
            [("event_date", "date", ""), ("hours_present", "hourly files", "int"), ("total_views", "views", "int")],
            "Every date has all its hourly files.",
            limit=30,
        ),
        "<h3>Top spikes (by views above the trailing mean)</h3>",
        _table(
            frames.spikes,
            [
                ("domain_code", "domain", ""),
                ("event_date", "date", ""),
                ("count_views", "views", "int"),
                ("baseline_mean", "trailing mean", "float"),
                ("excess_views", "excess views", "int"),
                ("ratio_to_baseline", "ratio", "float"),
                ("z_score", "z", "float"),
            ],
            "No spike found.",
        ),
        "<h3>Domains with the most missing days</h3>",
        _table(
            missing,
            [
                ("domain_code", "domain", ""),
                ("missing_days", "missing days", "int"),
                ("zero_view_days", "zero-view days", "int"),
                ("calendar_days", "calendar days", "int"),
                ("mean_daily_views", "mean views/day", "float"),
            ],
            "No domain misses a day of its calendar.",
        ),
        "<h3>Weekend / weekday ratio by access type (complete dates)</h3>",
        _table(
            frames.weekend.sort_values("access"),
            [
                ("access", "access", ""),
                ("weekday_mean", "weekday mean views", "float"),
                ("weekend_mean", "weekend mean views", "float"),
                ("weekend_weekday_ratio", "ratio", "float3"),
            ],
            "No complete date.",
        ),
    ]
    churn = [
        f"<p>Overall churn base rate: <b>{rate}</b> of {result.labelled_rows:,} labelled domain-days.</p>",
        _table(
            frames.churn_family,
            [
                ("project_family", "project family", ""),
                ("churn_base_rate", "churn base rate", "pct"),
                ("labelled_rows", "labelled rows", "int"),
                ("churn_positives", "positives", "int"),
                ("domains", "domains", "int"),
            ],
            "No labelled row (gold_churn_features missing or no label available).",
            limit=30,
        ),
    ]
    sections = []
    for name, title, text in _SECTIONS:
        if name not in result.plots:
            continue
        sections.append(f"<h2 id='{name}'>{html.escape(title)}</h2><p>{text}</p>{_image(result.plots[name], title)}")
        if name == "churn_base_rate":
            sections.append("".join(churn))
    counts = "".join(f"<tr><td>{html.escape(n)}</td><td>{r:,}</td></tr>" for n, r in result.tables.items())
    where = html.escape(settings.lake_uri) if settings is not None else ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wikichurn EDA</title><style>{_CSS}</style></head>
<body>
<h1>wikichurn: exploratory data analysis</h1>
<p class="muted">Lake <code>{where}</code>, generated {generated}. Dates are UTC.</p>
<div class="cards">{card_html}</div>
{f"<ul>{notes}</ul>" if notes else ""}
<h2 id="quirks">Quirks found</h2>
{"".join(quirks)}
{"".join(sections)}
<h2 id="tables">KPI tables written</h2>
<table><tr><th>table</th><th>rows</th></tr>{counts}</table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
