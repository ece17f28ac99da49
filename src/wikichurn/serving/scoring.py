"""Turning request instances into results: the hot path of ``POST /score``.

A batch is scored with one call to the native booster. Snapshot instances are rows of the snapshot
encoded once per model and snapshot (:class:`EncodedSnapshot`); history instances are validated one by one into dense
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
from dataclasses import dataclass, field
from datetime import date, timedelta
from operator import itemgetter
from typing import Any

import numpy as np

from wikichurn.core.columnar import History, Windows, compute_columns, last_day_windows, tail_windows
from wikichurn.core.featurespec import lookback_rows
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
_MIN_I, _MAX_I = (MIN_DATE - _EPOCH).days, (MAX_DATE - _EPOCH).days
_DIGIT_COLUMNS, _DASH_COLUMNS = [0, 1, 2, 3, 5, 6, 8, 9], [4, 7]  # of YYYY-MM-DD
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# No wiki has ever had this many views in a day; larger numbers are input errors.
MAX_VIEWS = 10**12
# Batches of this many histories and more are parsed as one (see history_windows); measured crossover.
WHOLE_BATCH_FROM = 3


@dataclass(frozen=True)
class ServingState:
    """What one request scores with: a model and a snapshot, swapped together, never mutated.

    The snapshot's rows are encoded for the model once, when the state is built (off the event
    loop, by the service), so a snapshot instance costs a row look-up, not an encoding.
    """

    model: LoadedModel
    snapshot: FeatureSnapshot | None
    snapshot_error: str | None = None
    encoded: EncodedSnapshot | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.snapshot is not None and self.snapshot.rows:
            object.__setattr__(self, "encoded", encode_snapshot(self.model, self.snapshot))


@dataclass(frozen=True)
class EncodedSnapshot:
    """The snapshot as the booster reads it: one matrix row per domain, and each domain's row."""

    rows: dict[str, int]
    matrix: np.ndarray  # (domains, features) float64, read-only


def encode_snapshot(model: LoadedModel, snapshot: FeatureSnapshot) -> EncodedSnapshot | None:
    """Encode every snapshot row for ``model``; None when a row lacks a feature of the model (the
    service does not serve such a snapshot; scoring then encodes per request and reports the row)."""
    codes = list(snapshot.rows)
    try:
        matrix = model.scorer.encode_records([snapshot.rows[code].features for code in codes])
    except KeyError:
        return None
    matrix.setflags(write=False)
    return EncodedSnapshot({code: i for i, code in enumerate(codes)}, matrix)


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
    asked: list[int] = []
    for i, instance in enumerate(instances):
        if instance.daily_views is not None:
            asked.append(i)
            continue
        try:
            day, row = _snapshot_row(state, instance)
        except ItemProblem as problem:
            results[i] = _error(instance.domain_code, problem.code, problem.message)
            continue
        snapshot_at.append(i)
        snapshot_rows.append(row)
        snapshot_days.append(day)
    history_at: list[int] = []
    windows = None
    if asked:
        windows, problems = history_windows([instances[i] for i in asked], model.churn, max_history_days)
        for i, refused in zip(asked, problems, strict=True):
            if refused is None:
                history_at.append(i)
            else:
                results[i] = _error(instances[i].domain_code, refused.code, refused.message)

    blocks: list[np.ndarray] = []
    if snapshot_rows:
        encoded = state.encoded
        if encoded is not None:
            lookup = encoded.rows
            blocks.append(encoded.matrix[[lookup[instances[i].domain_code] for i in snapshot_at]])
        else:
            blocks.append(scorer.encode_records(snapshot_rows))
    columns: dict[str, np.ndarray] = {}
    if windows is not None:
        try:
            columns = compute_columns(windows, model.churn, scorer.features)
            blocks.append(scorer.encode_columns(columns, len(history_at)))
        except Exception as exc:  # the feature code is trusted, but odd histories must not fail the batch
            log.exception("feature computation failed for %d histories", len(history_at))
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
    contributions = scorer.contribution_matrix(matrix) if explain else None
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


def history_windows(
    instances: Sequence[ScoreInstance],
    churn: ChurnSettings,
    max_history_days: int = 4000,
    *,
    whole_batch_from: int = WHOLE_BATCH_FROM,
) -> tuple[Windows | None, list[ItemProblem | None]]:
    """The last day of each instance's history as one row of :class:`Windows`.

    The rules are :func:`history_from_views`'s. From ``whole_batch_from`` instances on, every entry
    of the batch is parsed and checked in one pass of whole-array operations (a few dozen numpy
    calls for the batch, not a dozen per instance); an instance that a check flags goes through
    :func:`history_from_views`, which names its first bad entry exactly. Smaller batches take that
    path for every instance: below the crossover, fewer numpy calls beat whole-array ones.

    Returns:
        The windows of the instances that can be scored (in order; None when none can), and per
        instance None (it is a row of the windows) or the problem that keeps it out.
    """
    n = len(instances)
    if n < whole_batch_from:
        return _one_by_one(instances, churn, max_history_days)
    look = lookback_rows(churn)
    lengths = np.fromiter((len(i.daily_views or ()) for i in instances), "int64", n)
    suspect = lengths == 0
    entries = [entry for i in instances for entry in i.daily_views or ()]
    parsed = _parse_all(list(map(itemgetter("date"), entries)), list(map(itemgetter("views"), entries)))
    if parsed is None:  # some entry of the batch is odd: each instance is checked on its own
        return _one_by_one(instances, churn, max_history_days)
    days_i, views = parsed
    owners = np.repeat(np.arange(n), lengths)
    suspect |= np.bincount(owners[_out_of_range(days_i, views)], minlength=n) > 0
    # Sorted by (instance, day): each instance is one run, its first and last days at the ends.
    order = np.lexsort((days_i, owners))
    days_s, views_s, owners_s = days_i[order], views[order], owners[order]
    repeated = (days_s[1:] == days_s[:-1]) & (owners_s[1:] == owners_s[:-1])
    suspect |= np.bincount(owners_s[1:][repeated], minlength=n) > 0
    ends = np.cumsum(lengths)
    starts = ends - lengths
    nonempty = lengths > 0
    as_of = np.zeros(n, dtype="int64")
    first = np.zeros(n, dtype="int64")
    start = np.zeros(n, dtype="int64")
    as_of[nonempty] = days_s[ends[nonempty] - 1]
    first[nonempty] = days_s[starts[nonempty]]
    never = np.iinfo("int64").max
    if nonempty.any():  # the first day with views (reduceat needs the non-empty runs only)
        start[nonempty] = np.minimum.reduceat(np.where(views_s > 0, days_s, never), starts[nonempty])
    suspect |= (as_of - first + 1 > max_history_days) | (start == never) | (as_of - start + 1 < churn.window_days + 1)

    problems: list[ItemProblem | None] = [None] * n
    for k in np.flatnonzero(suspect).tolist():
        instance = instances[k]
        try:
            history_from_views(instance.domain_code, instance.daily_views or [], churn, max_history_days)
        except ItemProblem as problem:  # the exact message for the instance's first bad entry
            problems[k] = problem
        else:  # the checks above flagged what the rules accept: the rules decide, one by one
            return _one_by_one(instances, churn, max_history_days)
    keep = ~suspect
    if not keep.any():
        return None, problems
    rows_of = np.cumsum(keep) - 1  # an instance's row among the scored ones
    position = (as_of - start)[keep]
    # One row per scored instance, day t last: NaN before the domain's first day, else 0 until filled.
    matrix = np.where(np.arange(look + 1) >= look - position[:, None], 0.0, np.nan)
    offsets = days_s - as_of[owners_s]
    use = keep[owners_s] & (offsets >= -look) & (days_s >= start[owners_s])
    matrix[rows_of[owners_s[use]], look + offsets[use]] = views_s[use]
    domains = [instances[k].domain_code for k in np.flatnonzero(keep).tolist()]
    return tail_windows(matrix, as_of[keep].astype("datetime64[D]"), position, domains), problems


def _one_by_one(
    instances: Sequence[ScoreInstance], churn: ChurnSettings, max_history_days: int
) -> tuple[Windows | None, list[ItemProblem | None]]:
    histories: list[History] = []
    problems: list[ItemProblem | None] = []
    for instance in instances:
        try:
            histories.append(
                history_from_views(instance.domain_code, instance.daily_views or [], churn, max_history_days)
            )
            problems.append(None)
        except ItemProblem as problem:
            problems.append(problem)
    return (last_day_windows(histories, churn) if histories else None), problems


def _parse_all(texts: list[str], counts: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Days since 1970-01-01 and views of every entry, or None when any entry is not clean.

    The dates are read as bytes, all at once: ``YYYY-MM-DD`` exactly (ASCII digits, real
    calendar days), turned into day numbers by the proleptic Gregorian formula (H. Hinnant's
    ``days_from_civil``). A regular expression and numpy's own date parser cost ~0.5 us an entry.
    """
    n = len(texts)
    joined = "|".join(texts)
    if not n or len(joined) != 11 * n - 1 or joined.count("|") != n - 1 or not joined.isascii():
        return None  # so every text is 10 characters between separators
    raw = np.frombuffer((joined + "|").encode("ascii"), dtype=np.uint8).reshape(n, 11)
    digits = raw[:, _DIGIT_COLUMNS].astype("int64") - ord("0")
    if (raw[:, _DASH_COLUMNS] != ord("-")).any() or ((digits < 0) | (digits > 9)).any():
        return None
    year = digits[:, :4] @ np.array([1000, 100, 10, 1])
    month = digits[:, 4] * 10 + digits[:, 5]
    day = digits[:, 6] * 10 + digits[:, 7]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))
    if ((month < 1) | (month > 12) | (day < 1) | (day > month_days) | (year < 1)).any():
        return None
    y = year - (month <= 2)
    era, yoe = y // 400, y % 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    try:
        return days, np.array(counts, dtype="int64")
    except (OverflowError, TypeError, ValueError):
        return None


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
    ``YYYY-MM-DD`` passes, then numpy parses them, refusing impossible days: for one history of
    ~70 days about 3x faster than the byte-level :func:`_parse_all`, which wins on whole batches);
    anything else is checked entry by entry, which names the first bad one exactly.
    """
    texts = [entry["date"] for entry in daily_views]
    counts = [entry["views"] for entry in daily_views]
    if not _DATES_RE.fullmatch("|".join(texts)):
        return _entries_one_by_one(texts, counts)
    try:
        days = np.array(texts, dtype="datetime64[D]").astype("int64")
        views = np.array(counts, dtype="int64")
    except (ValueError, OverflowError, TypeError):
        return _entries_one_by_one(texts, counts)
    if _out_of_range(days, views).any() or len(np.unique(days)) != len(days):
        return _entries_one_by_one(texts, counts)
    return days, views


def _out_of_range(days: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Entries whose day is outside MIN_DATE..MAX_DATE or whose views are outside [0, MAX_VIEWS]."""
    return np.asarray((days < _MIN_I) | (days > _MAX_I) | (views < 0) | (views > MAX_VIEWS))


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
