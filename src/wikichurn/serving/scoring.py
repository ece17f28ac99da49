"""Turning request instances into results: the hot path of ``POST /score``.

A batch is scored with one call to the native booster. Snapshot instances are looked up and encoded
with :meth:`ChurnScorer.encode_records`; history instances are validated one by one into dense
arrays, then their features are computed together, vectorised, by :mod:`wikichurn.core.columnar`
(a matrix of one row per instance holding only the days the features read) and encoded column by
column. No pandas on the hot path; an instance that cannot be scored becomes an error in its own
place, never a failed batch.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from wikichurn.core.columnar import History, compute_columns, last_day_windows
from wikichurn.core.settings import ChurnSettings
from wikichurn.serving.registry import LoadedModel
from wikichurn.serving.schemas import DailyViews, ScoreInstance
from wikichurn.serving.snapshot import FeatureSnapshot

log = logging.getLogger(__name__)

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATES_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:\|\d{4}-\d{2}-\d{2})*")  # "|".join of a clean history
# Kept from the pandas days (its timestamps end in 2262): a bound on input errors, not on the code.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2199, 12, 31)
_EPOCH = date(1970, 1, 1)
_MIN_DAY, _MAX_DAY = np.datetime64(MIN_DATE, "D"), np.datetime64(MAX_DATE, "D")
# No wiki has ever had this many views in a day; larger numbers are input errors.
MAX_VIEWS = 10**12


@dataclass(frozen=True)
class ServingState:
    """What one request scores with: a model and a snapshot, swapped together, never mutated."""

    model: LoadedModel
    snapshot: FeatureSnapshot | None
    snapshot_error: str | None = None


class ItemProblem(Exception):
    """An instance that cannot be scored (returned in its place, not raised to the client)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def score_instances(
    state: ServingState,
    instances: Sequence[ScoreInstance],
    *,
    explain: bool = False,
    top_k: int = 5,
    max_history_days: int = 4000,
) -> list[dict[str, Any]]:
    """One result dict per instance, in order (see :class:`wikichurn.serving.schemas.ScoreResponse`)."""
    model = state.model
    scorer = model.scorer
    results: list[dict[str, Any]] = [{} for _ in instances]
    snapshot_at: list[int] = []
    snapshot_rows: list[dict[str, Any]] = []
    snapshot_days: list[date | None] = []
    history_at: list[int] = []
    histories: list[History] = []
    for i, instance in enumerate(instances):
        try:
            if instance.daily_views is not None:
                histories.append(
                    history_from_views(instance.domain_code, instance.daily_views, model.churn, max_history_days)
                )
                history_at.append(i)
            else:
                day, row = _snapshot_row(state, instance)
                snapshot_at.append(i)
                snapshot_rows.append(row)
                snapshot_days.append(day)
        except ItemProblem as problem:
            results[i] = _error(instance.domain_code, problem.code, problem.message)

    blocks: list[np.ndarray] = []
    if snapshot_rows:
        blocks.append(scorer.encode_records(snapshot_rows))
    columns: dict[str, np.ndarray] = {}
    if histories:
        try:
            columns = compute_columns(last_day_windows(histories, model.churn), model.churn, scorer.features)
            blocks.append(scorer.encode_columns(columns, len(histories)))
        except Exception as exc:  # the feature code is trusted, but odd histories must not fail the batch
            log.exception("feature computation failed for %d histories", len(histories))
            for i in history_at:
                message = f"features could not be computed: {type(exc).__name__}"
                results[i] = _error(instances[i].domain_code, "feature_error", message)
            history_at, columns = [], {}
    order = snapshot_at + history_at
    if not order:
        return results
    days = snapshot_days + ([d.item() for d in columns["event_date"]] if history_at else [])
    matrix = blocks[0] if len(blocks) == 1 else np.vstack(blocks)
    scores = scorer.predict_proba(matrix)
    contributions = _contributions(model, matrix) if explain else None
    threshold = scorer.threshold
    version = model.version
    for k, i in enumerate(order):
        risk = float(scores[k])
        result: dict[str, Any] = {
            "domain_code": instances[i].domain_code,
            "as_of": days[k],
            "risk_score": risk,
            "churn": risk >= threshold,
            "threshold": threshold,
            "model_version": version,
        }
        if contributions is not None:
            if k < len(snapshot_rows):
                row = snapshot_rows[k]
            else:
                row = {name: columns[name][k - len(snapshot_rows)] for name in scorer.features}
            result["explanation"] = _explanation(scorer.features, row, contributions[k], top_k)
        results[i] = result
    return results


def _snapshot_row(state: ServingState, instance: ScoreInstance) -> tuple[date | None, dict[str, Any]]:
    snapshot = state.snapshot
    if snapshot is None:
        detail = f": {state.snapshot_error}" if state.snapshot_error else ""
        raise ItemProblem(
            "snapshot_unavailable", f"no feature snapshot is loaded{detail}; send daily_views to score this domain"
        )
    row = snapshot.rows.get(instance.domain_code)
    if row is None:
        raise ItemProblem(
            "unknown_domain",
            f"{instance.domain_code!r} is not in the feature snapshot of {snapshot.as_of}; "
            "send daily_views to score it from its history",
        )
    return row.as_of, row.features


def history_from_views(
    domain_code: str,
    daily_views: Sequence[DailyViews],
    churn: ChurnSettings,
    max_history_days: int = 4000,
) -> History:
    """Validate a history and make it the dense calendar the features read (scored as of its last date).

    Rules: dates are ``YYYY-MM-DD`` and unique, views are integers in ``[0, 10**12]``, order does
    not matter, a date missing inside the range is a day with zero views (as in the lake), the
    domain starts on its first day with views (earlier zero days are ignored, as in the lake) and
    from there to the last date at least ``window_days + 1`` days are needed; every day counts as
    complete (24 hourly files).

    Raises:
        ItemProblem: the history breaks one of the rules.
    """
    days, views = _entries(daily_views)
    need = churn.window_days + 1
    if not len(days):
        raise ItemProblem("history_too_short", f"daily_views is empty; at least {need} days are needed")
    as_of, first = int(days.max()), int(days.min())
    span = as_of - first + 1
    if span > max_history_days:
        raise ItemProblem(
            "history_too_long",
            f"daily_views spans {span} days ({_day(first)} to {_day(as_of)}); at most {max_history_days}",
        )
    positive = views > 0
    if not positive.any():
        raise ItemProblem("no_views", "every day has zero views: the domain has no traffic to score")
    start = int(days[positive].min())
    active = as_of - start + 1
    if active < need:
        raise ItemProblem(
            "history_too_short",
            f"{active} day(s) from the first day with views ({_day(start)}) to {_day(as_of)}; "
            f"at least {need} (window_days + 1) are needed",
        )
    dense = np.zeros(active, dtype="int64")
    inside = days >= start
    dense[days[inside] - start] = views[inside]
    return History(domain_code, _day(start), dense)


def _entries(daily_views: Sequence[DailyViews]) -> tuple[np.ndarray, np.ndarray]:
    """Days (since 1970-01-01) and views of a history, every entry checked.

    A clean history is checked all at once (one regular expression over the joined dates, so only
    ``YYYY-MM-DD`` passes, then numpy parses them, refusing impossible days); anything else is
    checked entry by entry, which names the first bad one exactly.
    """
    texts = [entry["date"] for entry in daily_views]
    counts = [entry["views"] for entry in daily_views]
    if not _DATES_RE.fullmatch("|".join(texts)):
        return _entries_one_by_one(texts, counts)
    try:
        days = np.array(texts, dtype="datetime64[D]")
        views = np.array(counts, dtype="int64")
    except (ValueError, OverflowError, TypeError):
        return _entries_one_by_one(texts, counts)
    clean = (
        bool(((days >= _MIN_DAY) & (days <= _MAX_DAY)).all())
        and bool(((views >= 0) & (views <= MAX_VIEWS)).all())
        and len(np.unique(days)) == len(days)
    )
    if not clean:
        return _entries_one_by_one(texts, counts)
    return days.astype("int64"), views


def _entries_one_by_one(texts: list[str], counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    seen: dict[int, int] = {}
    for position, (text, count) in enumerate(zip(texts, counts, strict=True)):
        day = (_parse_date(text, position) - _EPOCH).days
        if not 0 <= count <= MAX_VIEWS:
            raise ItemProblem("invalid_views", f"daily_views[{position}] ({text}): views must be in [0, {MAX_VIEWS}]")
        if day in seen:
            raise ItemProblem("duplicate_date", f"daily_views[{position}]: {text} appears more than once")
        seen[day] = count
    return np.fromiter(seen, "int64", len(seen)), np.fromiter(seen.values(), "int64", len(seen))


def _day(days_since_epoch: int) -> date:
    return _EPOCH + timedelta(days=days_since_epoch)


def _parse_date(text: str, position: int) -> date:
    if _DATE_RE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            if MIN_DATE <= day <= MAX_DATE:
                return day
            raise ItemProblem("invalid_date", f"daily_views[{position}]: {text} is outside {MIN_DATE}..{MAX_DATE}")
    raise ItemProblem("invalid_date", f"daily_views[{position}]: {text!r} is not a YYYY-MM-DD date")


def _contributions(model: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    scorer = model.scorer
    values = scorer.booster.predict(matrix, pred_contrib=True, num_threads=1)
    return np.asarray(values, dtype="float64").reshape(matrix.shape[0], len(scorer.features) + 1)


def _explanation(features: Sequence[str], row: dict[str, Any], contrib: np.ndarray, top_k: int) -> dict[str, Any]:
    per_feature = contrib[:-1]
    order = np.argsort(-np.abs(per_feature), kind="stable")
    top, rest = order[:top_k], order[top_k:]
    return {
        "base_value": float(contrib[-1]),
        "contributions": [
            {
                "feature": features[j],
                "value": _json_value(row.get(features[j])),
                "contribution": float(per_feature[j]),
            }
            for j in top
        ],
        "other": float(per_feature[rest].sum()) if len(rest) else 0.0,
    }


def _json_value(value: Any) -> float | str | None:
    if value is None or isinstance(value, str):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def _error(domain_code: str, code: str, message: str) -> dict[str, Any]:
    return {"domain_code": domain_code, "error": {"code": code, "message": message}}
