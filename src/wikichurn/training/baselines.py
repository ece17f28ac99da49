"""The no-learning baseline: a risk score from today's views against the 3-day mean.

``score = 1 - min(1, count_views / avg_views_past_3d)``: 0 when today is at or above the mean
of the three previous days, rising to 1 as today's views fall to zero. A domain whose traffic
has already started to collapse today is likely to be below the churn line within the week.
Rows without a usable mean (missing or zero) score 0. The threshold is tuned on validation like
the model's. (The other baseline, LightGBM on ``wikichurn.core.churn.SEED_FEATURES`` only, is a
plain :class:`wikichurn.training.model.ChurnScorer`.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wikichurn.core.featurespec import past_mean_name
from wikichurn.training.model import META_FILE, ChurnScorer, find_model_files, write_meta


def heuristic_features(window_days: int = 3) -> tuple[str, str]:
    """Today's views and the mean of the label's past window (its name follows ``window_days``)."""
    return ("count_views", past_mean_name(window_days))


HEURISTIC_FEATURES: tuple[str, str] = heuristic_features()


def heuristic_score(frame: pd.DataFrame, features: tuple[str, str] | list[str] = HEURISTIC_FEATURES) -> np.ndarray:
    """``1 - min(1, count_views / avg_views_past_<w>d)`` per row, 0 without a positive mean."""
    views = pd.to_numeric(frame[features[0]]).to_numpy(dtype="float64", na_value=np.nan)
    mean = pd.to_numeric(frame[features[1]]).to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((mean > 0) & ~np.isnan(views), views / mean, 1.0)
    return 1.0 - np.clip(ratio, 0.0, 1.0)


class HeuristicScorer:
    """:func:`heuristic_score` with a tuned threshold, shaped like :class:`ChurnScorer`."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = dict(meta)
        self.features = list(meta.get("features", HEURISTIC_FEATURES))
        self.threshold = float(meta["threshold"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return heuristic_score(frame, self.features)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        scores = self.predict_proba(frame)
        return pd.DataFrame(
            {"risk_score": scores, "churn": (scores >= self.threshold).astype("int64")}, index=frame.index
        )

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_meta(folder / META_FILE, self.meta)
        return folder


def load_any_scorer(folder: str | Path) -> ChurnScorer | HeuristicScorer:
    """The scorer saved in ``folder``: a :class:`ChurnScorer`, or the heuristic (meta only)."""
    _booster, meta_path = find_model_files(folder, need_booster=False)
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") == "heuristic":
        return HeuristicScorer(meta)
    return ChurnScorer.from_dir(folder)
