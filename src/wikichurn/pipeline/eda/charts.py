"""Matplotlib building blocks of the EDA plots: the palette, figures (object API, no pyplot, so
no GUI backend is ever touched), date and log axes with readable labels, and the one helper that
draws a set of daily series (every time-series plot of the report is one call of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BLUE, ORANGE, RED, GREEN, GREY, PURPLE = "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#7f7f7f", "#9467bd"
ACCESS_COLOURS = {"all": "#222222", "desktop": BLUE, "mobile": ORANGE, "zero": GREEN, "unknown": GREY}


def figure(ncols: int = 1, nrows: int = 1, width: float = 11.0, height: float = 4.6) -> tuple[Figure, Any]:
    """A figure and its ``nrows x ncols`` grid of axes (always 2-D: ``axes[row][col]``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def dates(values: Any) -> Any:
    """Dates as numpy datetimes, which matplotlib's date axis understands."""
    import pandas as pd

    return pd.to_datetime(pd.Series(values)).to_numpy()


def date_axis(ax: Axes) -> None:
    """A concise date x axis, 4 to 10 ticks."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("date (UTC)")


def style(ax: Axes, title: str, ylabel: str | None, *, grid_axis: str = "both") -> None:
    """The house style: title on the left, light grid, no top/right frame."""
    ax.set_title(title, fontsize=11, loc="left")
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.grid(True, which="major", axis=grid_axis, alpha=0.3)  # type: ignore[arg-type]
    ax.spines[["top", "right"]].set_visible(False)


def empty(*axes: Axes, message: str) -> None:
    """Say ``message`` in the middle of each of ``axes`` instead of a plot."""
    for ax in axes:
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=GREY, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])


def human(value: float) -> str:
    """160M, not 1.6e8."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def log_axis(ax: Axes, axis: str = "y") -> None:
    """Log scale with readable labels (160M, not 1.6 x 10^8), minor ticks labelled on short spans."""
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    ax.set_yscale("log") if axis == "y" else ax.set_xscale("log")

    def minor(value: float, _pos: int) -> str:
        lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
        if value <= 0 or lo <= 0:
            return ""
        span = hi / lo
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
        if span <= 6 or (span <= 40 and mantissa in (2, 5)):
            return human(value)
        return ""

    target.set_major_formatter(FuncFormatter(lambda value, _pos: human(value)))
    target.set_minor_formatter(FuncFormatter(minor))


def percent(ax: Axes, axis: str = "y") -> None:
    """Tick labels as percentages of 1.0."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path``."""
    fig.savefig(path, format="png")
    return path


@dataclass(frozen=True)
class Line:
    """One daily series of :func:`daily_lines`: a column of the frame and how to draw it."""

    column: str
    colour: str
    label: str
    width: float = 1.6
    linestyle: str = "-"


def daily_lines(
    data: pd.DataFrame,
    lines: list[Line],
    *,
    title: str,
    ylabel: str,
    empty_message: str,
    legend_loc: str,
    incomplete_marks: str | None = None,
    log: bool = False,
    ylim: tuple[float, float | None] | None = (0.0, None),
    integer: bool = False,
    legend_fontsize: float | None = None,
) -> Figure:
    """A date axis with one line per :class:`Line` over ``data`` (rows with ``event_date``).

    Args:
        data: the rows to draw (already filtered); empty gives a figure saying ``empty_message``.
        lines: the series, drawn in order.
        title: the plot title.
        ylabel: the y axis label.
        empty_message: what an empty ``data`` shows.
        legend_loc: where the legend goes.
        incomplete_marks: a column whose values on incomplete dates get a red cross.
        log: a log y axis (see :func:`log_axis`); ``ylim`` is then ignored.
        ylim: y limits (``None`` top = automatic).
        integer: integer ticks on the y axis.
        legend_fontsize: the legend's font size (matplotlib's default when None).
    """
    fig, axes = figure()
    ax = axes[0][0]
    if data.empty:
        empty(ax, message=empty_message)
        return fig
    x = dates(data["event_date"])
    for line in lines:
        ax.plot(x, data[line.column], color=line.colour, lw=line.width, ls=line.linestyle, label=line.label)
    if incomplete_marks is not None:
        bad = data[data["incomplete"] & (data[incomplete_marks] > 0)]
        if len(bad):
            ax.scatter(
                dates(bad["event_date"]),
                bad[incomplete_marks],
                marker="x",
                color=RED,
                zorder=3,
                label=f"incomplete date ({len(bad)})",
            )
    if log:
        log_axis(ax)
    elif ylim is not None:
        ax.set_ylim(*ylim)
    if integer:
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    style(ax, title, ylabel)
    date_axis(ax)
    ax.legend(loc=legend_loc, frameon=False, fontsize=legend_fontsize)
    return fig
