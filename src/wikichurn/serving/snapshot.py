"""The feature snapshot: every domain's features on the latest complete day, held in memory.

``wikichurn features export`` (:func:`wikichurn.pipeline.lakehouse.features.export_snapshot`) writes a parquet file
with ``KEY_COLUMNS`` + ``FEATURE_COLUMNS`` and a ``<file>.json`` sidecar whose ``as_of`` is the day.
The service reads it once at start-up and on every reload into ``domain -> feature row`` dicts, so
scoring a known domain is a dict lookup (no engine, no pandas).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One domain's features (feature name -> value, None = missing) on day ``as_of``."""

    as_of: date | None
    features: dict[str, Any]


@dataclass(frozen=True)
class FeatureSnapshot:
    """Feature rows of the snapshot day, by domain code."""

    path: str
    as_of: date | None
    rows: dict[str, SnapshotRow]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __len__(self) -> int:
        return len(self.rows)


def sidecar_path(path: str | Path) -> Path:
    """``<file>.json`` next to the snapshot file."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_snapshot(path: str | Path) -> FeatureSnapshot:
    """Read the snapshot parquet (and its sidecar) into memory.

    Raises:
        FileNotFoundError: no snapshot at ``path``.
        ValueError: the file has no ``domain_code`` column or holds a domain twice.
    """
    path = Path(path)
    table = pq.read_table(path)
    if "domain_code" not in table.column_names:
        raise ValueError(f"{path}: no domain_code column")
    rows: dict[str, SnapshotRow] = {}
    days: set[date] = set()
    sidecar_day = _sidecar_as_of(path)
    for record in table.to_pylist():
        domain = record["domain_code"]
        if domain in rows:
            raise ValueError(f"{path}: domain {domain!r} appears more than once")
        day = _as_date(record.pop("event_date", None)) or sidecar_day
        if day is not None:
            days.add(day)
        rows[str(domain)] = SnapshotRow(day, {k: _plain(v) for k, v in record.items()})
    # The rows' own dates win: the exporter replaces the parquet file before it rewrites the sidecar.
    as_of = max(days) if days else sidecar_day
    if sidecar_day is not None and sidecar_day != as_of:
        log.warning("snapshot %s: sidecar says as_of=%s, rows say %s; using the rows", path, sidecar_day, as_of)
    if len(days) > 1:
        log.warning("snapshot %s spans %d days; reporting as_of=%s", path, len(days), as_of)
    log.info("loaded feature snapshot %s: %d domains as of %s", path, len(rows), as_of)
    return FeatureSnapshot(path=str(path), as_of=as_of, rows=rows)


def _sidecar_as_of(path: Path) -> date | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        value = json.loads(side.read_text()).get("as_of")
        return date.fromisoformat(value) if value else None
    except (ValueError, AttributeError) as exc:
        log.warning("ignoring unreadable snapshot sidecar %s: %s", side, exc)
        return None


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _plain(value: Any) -> Any:
    # NaN means "missing" for the booster and is not JSON: keep it as None.
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
