"""The EDA plots: one PNG per KPI or quirk, drawn from the small pandas aggregates of
:class:`wikichurn.pipeline.eda.results.EdaFrames` with matplotlib's object API (Agg, no pyplot).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wikichurn.pipeline.eda import charts
from wikichurn.pipeline.eda.charts import Line
from wikichurn.pipeline.eda.quirks import DAY_NAMES, SpikeRule
from wikichurn.pipeline.eda.results import isnan

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from wikichurn.pipeline.eda.results import EdaFrames

PLOT_FILES: dict[str, str] = {
    "total_daily_views": "01_total_daily_views.png",
    "weekly_monthly_views": "02_weekly_monthly_views.png",
    "active_domains": "03_active_domains.png",
    "concentration": "04_concentration.png",
    "streaks": "05_streaks.png",
    "weekday_seasonality": "06_weekday_seasonality.png",
    "domain_sizes": "07_domain_sizes.png",
    "completeness": "08_completeness.png",
    "missing_zero_days": "09_missing_zero_days.png",
    "spikes": "10_spikes.png",
    "churn_base_rate": "11_churn_base_rate.png",
}


def render_plots(
    frames: EdaFrames, plots_dir: Path, *, spike_rule: SpikeRule = SpikeRule(), min_hours: int = 24
) -> dict[str, Path]:
    """Draw every EDA plot into ``plots_dir`` (created if needed); name -> PNG path."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    daily = frames.daily
    drawers: dict[str, Callable[[], Figure]] = {
        "total_daily_views": lambda: charts.daily_lines(
            daily[daily["total_views"] > 0],
            [Line("total_views", charts.BLUE, "all domains")],
            title="Total daily views (all domains)",
            ylabel="views per day (log scale)",
            empty_message="no views in the lake",
            legend_loc="best",
            incomplete_marks="total_views",
            log=True,
        ),
        "weekly_monthly_views": lambda: _plot_periods(frames.weekly, frames.monthly, frames.top_domains),
        "active_domains": lambda: charts.daily_lines(
            daily,
            [Line("active_domains", charts.GREEN, "domains with views")],
            title="Active domains per day (domains with at least one view)",
            ylabel="domains",
            empty_message="no data",
            legend_loc="lower right",
            incomplete_marks="active_domains",
        ),
        "concentration": lambda: charts.daily_lines(
            daily.dropna(subset=["hhi"]),
            [
                Line("hhi", charts.RED, "HHI = sum of squared shares"),
                Line("diversity", charts.GREEN, "diversity = 1 - HHI"),
                Line("top10_share", charts.PURPLE, "top-10 domains' share", width=1.2, linestyle="--"),
            ],
            title="Concentration of daily views over domains",
            ylabel="index / share (0 .. 1)",
            empty_message="no views in the lake",
            legend_loc="center right",
            ylim=(0.0, 1.02),
            legend_fontsize=9,
        ),
        "streaks": lambda: charts.daily_lines(
            daily.dropna(subset=["mean_streak"]),
            [
                Line("mean_streak", charts.BLUE, "mean"),
                Line("median_streak", charts.ORANGE, "median", linestyle="--"),
            ],
            title="Current streak of consecutive days with views, over the domains active that day",
            ylabel="streak length (days)",
            empty_message="no active domain",
            legend_loc="upper left",
            integer=True,
        ),
        "weekday_seasonality": lambda: _plot_seasonality(frames.seasonality, frames.weekend),
        "domain_sizes": lambda: _plot_domain_sizes(frames.domains),
        "completeness": lambda: _plot_completeness(daily, min_hours),
        "missing_zero_days": lambda: _plot_missing_zero(frames.domains),
        "spikes": lambda: _plot_spikes(frames.spike_series, spike_rule),
        "churn_base_rate": lambda: _plot_churn(daily, frames.churn_family),
    }
    return {name: charts.save(draw(), plots_dir / PLOT_FILES[name]) for name, draw in drawers.items()}


def _plot_periods(weekly: pd.DataFrame, monthly: pd.DataFrame, top_domains: Sequence[str]) -> Figure:
    import numpy as np
    import pandas as pd

    fig, axes = charts.figure(ncols=2, height=4.8, width=12.0)
    colours = {code: f"C{i + 1}" for i, code in enumerate(top_domains)}
    handles: dict[str, Any] = {}
    for ax, data, key, label in (
        (axes[0][0], weekly, "week_start", "Weekly views (ISO weeks, Monday start)"),
        (axes[0][1], monthly, "month_start", "Monthly views"),
    ):
        total = data[data["level"] == "total"]
        if total.empty:
            charts.empty(ax, message="no data")
            continue
        start = pd.to_datetime(total[key])
        length = total["period_days"].to_numpy(dtype=float)
        full = ~total["partial"].to_numpy(dtype=bool)
        views = total["views"].to_numpy(dtype=float)
        # Each bar spans its period; a small gap keeps neighbours apart.
        bars = {"width": length * 0.94, "align": "edge"}
        handles["total"] = ax.bar(
            start.to_numpy()[full], views[full], color=charts.BLUE, alpha=0.3, **_subset(bars, full)
        )
        if (~full).any():
            handles["total, partial period (hatched)"] = ax.bar(
                start.to_numpy()[~full],
                views[~full],
                color="white",
                edgecolor=charts.BLUE,
                hatch="//",
                **_subset(bars, ~full),
            )
        for x0, days, lake_days, height in zip(
            start.to_numpy()[~full], length[~full], total["lake_days"].to_numpy()[~full], views[~full], strict=True
        ):
            middle = x0 + np.timedelta64(int(days * 12), "h")
            ax.annotate(
                f"{int(lake_days)}/{int(days)} days",
                (middle, height),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=charts.BLUE,
            )
        domains = data[data["level"] == "domain"]
        for code in top_domains:
            rows = domains[domains["domain_code"] == code]
            if rows.empty:
                continue
            middle = pd.to_datetime(rows[key]) + pd.to_timedelta(rows["period_days"] / 2, unit="D")
            (line,) = ax.plot(middle, rows["views"], marker="o", ms=4, lw=1.3, color=colours[code])
            handles[code] = line
        charts.log_axis(ax)
        charts.style(ax, label, "views per period (log scale)")
        charts.date_axis(ax)
        ax.set_xlim(start.min() - pd.Timedelta(days=1), (start + pd.to_timedelta(length, unit="D")).max())
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right upper", frameon=False, fontsize=8)
    return fig


def _subset(options: dict[str, Any], mask: Any) -> dict[str, Any]:
    return {k: (v[mask] if hasattr(v, "__len__") and not isinstance(v, str) else v) for k, v in options.items()}


def _plot_seasonality(seasonality: pd.DataFrame, weekend: pd.DataFrame) -> Figure:
    fig, axes = charts.figure(ncols=2, height=4.6)
    left, right = axes[0][0], axes[0][1]
    if seasonality.empty:
        charts.empty(left, right, message="no complete date")
        return fig
    ratios = dict(zip(weekend["access"], weekend["weekend_weekday_ratio"], strict=False))
    order = [a for a in ("all", "desktop", "mobile", "zero", "unknown") if a in set(seasonality["access"])]
    for access in order:
        rows = seasonality[seasonality["access"] == access].sort_values("dayofweek")
        ratio = ratios.get(access)
        label = f"{access} (weekend/weekday {ratio:.2f})" if ratio is not None and not isnan(ratio) else access
        colour = charts.ACCESS_COLOURS.get(access, charts.GREY)
        style = {"lw": 2.4 if access == "all" else 1.6, "marker": "o", "color": colour}
        index = rows["mean_views"] / rows["mean_views"].mean()
        left.plot(rows["dayofweek"], index, label=label, **style)
        right.plot(rows["dayofweek"], rows["mean_views"], label=access, **style)
    left.axhline(1.0, color=charts.GREY, lw=0.8)
    for ax in (left, right):
        ax.set_xticks(range(1, 8), DAY_NAMES)
        ax.set_xlabel("ISO day of week")
        ax.axvspan(5.5, 7.5, color=charts.GREY, alpha=0.08)
        ax.set_xlim(0.7, 7.3)
    charts.style(left, "Weekday profile (mean views / weekly mean)", "relative to the weekly mean (1 = average day)")
    left.legend(loc="best", frameon=False, fontsize=8)
    charts.log_axis(right)
    charts.style(right, "Mean daily views by day of week (complete dates)", "views per day (log scale)")
    right.legend(loc="best", frameon=False, fontsize=8)
    return fig


def _plot_domain_sizes(domains: pd.DataFrame) -> Figure:
    import numpy as np

    fig, axes = charts.figure(ncols=2, height=4.6)
    left, right = axes[0][0], axes[0][1]
    sizes = domains["mean_daily_views"].to_numpy(dtype=float)
    sizes = np.sort(sizes[sizes > 0])[::-1]
    if sizes.size == 0:
        charts.empty(left, right, message="no domain with views")
        return fig
    lo, hi = math.floor(math.log10(sizes.min())), math.ceil(math.log10(sizes.max()))
    bins = np.logspace(lo, max(hi, lo + 1), max(8, 4 * (hi - lo) + 1))
    left.hist(sizes, bins=bins, color=charts.BLUE, alpha=0.8, edgecolor="white")
    charts.log_axis(left, "x")
    charts.log_axis(left)
    left.set_xlabel("mean daily views of the domain (log scale)")
    charts.style(left, f"Distribution of domain sizes ({sizes.size:,} domains)", "domains (log scale)")
    ranks = np.arange(1, sizes.size + 1)
    right.plot(ranks, sizes, marker="o", ms=2.5, lw=1, color=charts.PURPLE)
    charts.log_axis(right, "x")
    charts.log_axis(right)
    right.set_xlabel("rank of the domain by size (log scale)")
    charts.style(right, "Rank-size plot", "mean daily views (log scale)")
    return fig


def _plot_completeness(daily: pd.DataFrame, min_hours: int) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11.0, 5.4), dpi=110, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    if daily.empty:
        charts.empty(top, message="no data")
        bottom.set_visible(False)
        return fig
    x = charts.dates(daily["event_date"])
    bad_mask = daily["incomplete"].to_numpy(dtype=bool)
    hours = daily["hours_present"].to_numpy()
    # Full-width bars: with a year of dates, narrower ones turn into hairlines.
    top.bar(x[~bad_mask], hours[~bad_mask], width=1.0, color=charts.BLUE, linewidth=0)
    top.bar(x[bad_mask], hours[bad_mask], width=1.0, color=charts.RED, linewidth=0)
    top.scatter(x[bad_mask], [25.5] * int(bad_mask.sum()), marker="v", color=charts.RED, s=18, zorder=3)
    top.axhline(24, color="black", lw=0.8, ls="--")
    if min_hours != 24:
        top.axhline(min_hours, color=charts.RED, lw=0.8, ls=":")
    bad = int(bad_mask.sum())
    top.set_ylim(0, 30)
    top.set_yticks([0, 6, 12, 18, 24])
    top.legend(
        handles=[
            Patch(color=charts.BLUE, label=f"complete ({len(daily) - bad} dates)"),
            Patch(color=charts.RED, label=f"incomplete: fewer than {min_hours} hourly files ({bad} dates, marked ▼)"),
        ],
        loc="upper left",
        ncols=2,
        frameon=False,
        fontsize=9,
    )
    charts.style(top, "Hourly completeness per date (24 = every hourly file present)", "hourly files present")
    missing = 24 - hours
    bottom.bar(x, missing, width=1.0, color=charts.RED, linewidth=0)
    bottom.set_ylim(0, max(int(missing.max()), 1) * 1.15)
    bottom.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    charts.style(bottom, "", "missing hourly files")
    charts.date_axis(bottom)
    return fig


def _plot_missing_zero(domains: pd.DataFrame) -> Figure:
    import numpy as np

    fig, axes = charts.figure(ncols=2, height=5.0)
    left, right = axes[0][0], axes[0][1]
    alive = domains[domains["calendar_days"] > 0]
    if alive.empty:
        charts.empty(left, right, message="no domain with views")
        return fig
    missing = alive["missing_days"].to_numpy()
    top = max(int(missing.max()), 1)
    bins = np.arange(-0.5, top + 1.5, max(1, math.ceil((top + 1) / 40)))
    left.hist(missing, bins=bins, color=charts.ORANGE, edgecolor="white")
    charts.log_axis(left)
    left.set_xlabel("missing days in the domain's calendar (no gold row)")
    charts.style(left, "Domains by number of missing days", "domains (log scale)")
    inactive = alive.assign(_bad=alive["missing_days"] + alive["zero_view_days"])
    worst = inactive[inactive["_bad"] > 0].sort_values(["_bad", "domain_code"], ascending=[False, True]).head(15)
    if worst.empty:
        charts.empty(right, message="no domain missed a day")
    else:
        worst = worst.iloc[::-1]
        y = np.arange(len(worst))
        right.barh(y, worst["missing_days"], color=charts.ORANGE, label="missing (no row)")
        right.barh(
            y, worst["zero_view_days"], left=worst["missing_days"], color=charts.GREY, label="zero views reported"
        )
        right.set_yticks(y, worst["domain_code"], fontsize=8)
        right.set_xlabel("days")
        right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, frameon=False, fontsize=8)
        charts.style(right, "Domains with the most days without views", None, grid_axis="x")
    return fig


def _plot_spikes(series: pd.DataFrame, rule: SpikeRule) -> Figure:
    codes = list(dict.fromkeys(series["domain_code"])) if len(series) else []
    if not codes:
        fig, axes = charts.figure()
        charts.empty(axes[0][0], message="no domain to show")
        return fig
    ncols = 2 if len(codes) > 1 else 1
    nrows = math.ceil(len(codes) / ncols)
    fig, axes = charts.figure(ncols=ncols, nrows=nrows, height=3.2 * nrows + 0.6)
    for i, code in enumerate(codes):
        ax = axes[i // ncols][i % ncols]
        rows = series[series["domain_code"] == code]
        x = charts.dates(rows["event_date"])
        views = rows["count_views"].astype(float).where(rows["count_views"] > 0)
        ax.plot(x, views, color=charts.BLUE, lw=1.3, label="daily views")
        ax.plot(
            x, rows["baseline_mean"], color=charts.GREY, lw=1, ls="--", label=f"trailing {rule.window_days}-day mean"
        )
        ax.plot(
            x, rows["spike_threshold"], color=charts.ORANGE, lw=1, ls=":", label=f"threshold (+{rule.k_sigma:g} sd)"
        )
        hits = rows[rows["is_spike"]]
        ax.scatter(
            charts.dates(hits["event_date"]), hits["count_views"], color=charts.RED, zorder=3, s=28, label="spike"
        )
        charts.log_axis(ax)
        charts.style(ax, f"{code}: {len(hits)} spike(s)", "views per day (log)")
        charts.date_axis(ax)
        if i == 0:
            fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    for j in range(len(codes), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.suptitle("Spikes on the biggest domains that have any (red: views above the threshold)", fontsize=12)
    return fig


def _plot_churn(daily: pd.DataFrame, family: pd.DataFrame) -> Figure:
    import numpy as np

    fig, axes = charts.figure(ncols=2, height=4.8)
    left, right = axes[0][0], axes[0][1]
    if daily["churn_base_rate"].notna().sum() == 0:
        charts.empty(left, message="no labelled row")
    else:
        # Every date, so dates without labels break the line instead of being bridged.
        x = charts.dates(daily["event_date"])
        counts = left.twinx()
        counts.step(x, daily["labelled_rows"], where="mid", color=charts.GREY, lw=1, alpha=0.8)
        counts.set_ylim(bottom=0)
        counts.set_ylabel("labelled domain-days", color=charts.GREY)
        counts.spines[["top"]].set_visible(False)
        left.set_zorder(counts.get_zorder() + 1)
        left.patch.set_visible(False)
        rate = daily["churn_base_rate"].astype(float)
        left.plot(x, rate, color=charts.RED, lw=1.6, marker="o", ms=2.5, label="churn base rate")
        left.set_ylim(bottom=0)
        charts.percent(left)
        charts.style(left, "Churn base rate per date (labelled rows only)", "share of labelled domains churning")
        charts.date_axis(left)
        from matplotlib.lines import Line2D

        handles = [
            *left.get_legend_handles_labels()[0],
            Line2D([], [], color=charts.GREY, lw=1, label="labelled rows (right axis)"),
        ]
        left.legend(handles=handles, loc="lower left", frameon=False, fontsize=8)
    fam = family.dropna(subset=["churn_base_rate"]) if len(family) else family
    if fam.empty:
        charts.empty(right, message="no labelled row")
    else:
        fam = fam.sort_values("churn_base_rate")
        y = np.arange(len(fam))
        right.barh(y, fam["churn_base_rate"], color=charts.RED, alpha=0.75)
        right.set_yticks(y, fam["project_family"], fontsize=9)
        for yi, (rate, n) in enumerate(zip(fam["churn_base_rate"], fam["labelled_rows"], strict=True)):
            right.text(rate, yi, f" {rate:.1%} (n={int(n):,})", va="center", fontsize=8)
        right.set_xlim(0, max(float(fam["churn_base_rate"].max()) * 1.35, 0.05))
        charts.percent(right, "x")
        right.set_xlabel("churn base rate")
        charts.style(right, "Churn base rate by project family", None, grid_axis="x")
    return fig
