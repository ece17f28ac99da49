"""Rolling-origin (walk-forward) folds over labelled dates, and the rows a refit sees.

Fold k validates on a contiguous block of dates and trains on every date strictly before the
block's first date minus ``gap_days``. With ``gap_days`` >= the label horizon, no training row's
label window (the ``horizon`` days after its date) reaches a validation date. The blocks tile
the development dates after the first ``min_train_fraction`` of them (less on a calendar too
short for that and ``folds`` validation dates), oldest first, so every development row after
that point is predicted exactly once out of fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wikichurn.training.config import CVSettings

DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold, by inclusive dates."""

    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    validation_start: pd.Timestamp
    validation_end: pd.Timestamp

    def train_mask(self, dates: pd.Series) -> pd.Series:
        """Rows of the fold's train set."""
        return (dates >= self.train_start) & (dates <= self.train_end)

    def validation_mask(self, dates: pd.Series) -> pd.Series:
        """Rows of the fold's validation block."""
        return (dates >= self.validation_start) & (dates <= self.validation_end)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dates."""
        return {
            "fold": self.number,
            "train": f"{self.train_start.date()}..{self.train_end.date()}",
            "validation": f"{self.validation_start.date()}..{self.validation_end.date()}",
        }


def walk_forward_folds(dates: Sequence[Any] | pd.Series, cv: CVSettings, gap_days: int) -> list[Fold]:
    """The walk-forward folds over the labelled ``dates`` (one entry per row or per date).

    Args:
        dates: event dates of the development rows (anything ``pd.to_datetime`` reads).
        cv: number of folds and the share of dates always kept for training.
        gap_days: dates dropped between a fold's train end and its validation start.

    Returns:
        Up to ``cv.folds`` folds (fewer when there are fewer candidate dates), oldest first,
        each with a non-empty train set.

    Raises:
        ValueError: too few dates for even one fold.
    """
    days = np.unique(pd.to_datetime(pd.Series(dates)).dt.normalize().to_numpy(dtype="datetime64[D]"))
    n = len(days)
    if n == 0:
        raise ValueError("no labelled dates to build folds from")
    # First validation date: at least min_train dates lie before it by more than the gap.
    before = np.searchsorted(days, days - gap_days * DAY, side="left")  # dates < d - gap
    # On a short calendar the share is lowered so that the last ``folds`` dates can still validate.
    min_train = max(1, min(int(np.ceil(cv.min_train_fraction * n)), int(before[max(0, n - cv.folds)])))
    candidates = np.flatnonzero(before >= min_train)
    if candidates.size == 0:
        raise ValueError(
            f"{n} labelled dates cannot hold a walk-forward fold: {min_train} training dates "
            f"plus a {gap_days}-day gap leave no validation date"
        )
    blocks = [b for b in np.array_split(np.arange(candidates[0], n), min(cv.folds, n - candidates[0])) if b.size]
    folds: list[Fold] = []
    for k, block in enumerate(blocks):
        first = days[block[0]]
        train = days[days < first - gap_days * DAY]
        folds.append(
            Fold(
                number=k,
                train_start=pd.Timestamp(train[0]),
                train_end=pd.Timestamp(train[-1]),
                validation_start=pd.Timestamp(first),
                validation_end=pd.Timestamp(days[block[-1]]),
            )
        )
    return folds


@dataclass(frozen=True)
class RowRange:
    """The rows one model was fit on: date range, count, positives (stored in its metadata)."""

    start: str
    end: str
    rows: int
    positives: int

    @classmethod
    def of(cls, frame: pd.DataFrame, label: str = "churn") -> RowRange:
        """Describe ``frame``'s rows."""
        dates = pd.to_datetime(frame["event_date"])
        return cls(
            start=dates.min().date().isoformat(),
            end=dates.max().date().isoformat(),
            rows=len(frame),
            positives=int(frame[label].sum()),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields."""
        return {"start": self.start, "end": self.end, "rows": self.rows, "positives": self.positives}

    def label(self) -> str:
        """``start..end`` as used in tags."""
        return f"{self.start}..{self.end}"


def scaled_rounds(
    best_iterations: Sequence[int], fold_rows: Sequence[int], rows: int, exponent: float, cap: int
) -> int:
    """Boosting rounds for a refit on ``rows`` rows: the median over folds of each fold's best
    iteration scaled by ``(rows / fold train rows) ** exponent``, between 1 and ``cap``."""
    if not best_iterations:
        raise ValueError("no fold results to take the boosting rounds from")
    scaled = [b * (rows / max(1, r)) ** exponent for b, r in zip(best_iterations, fold_rows, strict=True)]
    return int(min(cap, max(1, round(float(np.median(scaled))))))
