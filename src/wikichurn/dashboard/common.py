"""What every page shares: the settings, the lake reader, cached reads and the empty states.

Reads are cached with ``st.cache_data`` keyed on the table's Delta version (and the lake root), so
a page re-run costs a version check per table, and a new pipeline or scoring run is seen at once.
Registry reads are cached for ``REGISTRY_TTL_S`` seconds (a promotion shows up within that time).
"""

from __future__ import annotations

import os
import time
from typing import Any, NoReturn

import pandas as pd
import streamlit as st

from wikichurn.core.settings import Settings, tracking_uri
from wikichurn.core.tables import GOLD_SCORES
from wikichurn.dashboard import RENDERED, data, registry
from wikichurn.serving.nospark import forbid_pyspark

REGISTRY_TTL_S = 30
forbid_pyspark()  # MLflow imports pyspark when it can; the dashboard never needs it
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def settings() -> Settings:
    """The settings (files + ``WIKICHURN_*`` / ``MLFLOW_TRACKING_URI`` variables), read on every run."""
    return Settings()


@st.cache_resource
def _reader(lake_uri: str, _settings: Settings) -> data.LakeReader:
    return data.LakeReader(_settings)


def reader() -> data.LakeReader:
    s = settings()
    return _reader(s.lake_uri, s)


_started = {"at": time.perf_counter()}


def empty(message: str, todo: str) -> NoReturn:
    """An empty state that says what to run (``todo`` is markdown, e.g. "run `wikichurn eda`"); ends the page."""
    st.info(f"{message}  \n{todo}", icon=":material/info:")
    footer()
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the script")  # for type checkers


def footer() -> None:
    """The page's last line: how long its script took (cached reads make re-runs fast)."""
    st.caption(f"{RENDERED} {time.perf_counter() - _started['at']:.2f} s.")


def chart(figure: Any) -> None:
    """Draw an Altair chart at full width with its own styling (titles and axis titles as set)."""
    st.altair_chart(figure, width="stretch", theme=None)


def header(title: str, caption: str) -> None:
    _started["at"] = time.perf_counter()
    st.title(title)
    s = settings()
    st.caption(f"{caption}  \nLake: `{s.lake_uri}` · MLflow: `{tracking_uri(s) or 'not configured'}`")


# -- cached reads (the first argument is the reader, excluded from the cache key) -----------------


@st.cache_data(show_spinner=False)
def scores(_reader: data.LakeReader, root: str, table_version: int | None, model_version: str | None) -> Any:
    return data.scores_for_version(_reader, model_version)


@st.cache_data(show_spinner=False)
def daily_views(_reader: data.LakeReader, root: str, table_version: int | None) -> Any:
    return data.daily_views(_reader)


@st.cache_data(show_spinner=False)
def engagement(_reader: data.LakeReader, root: str, versions: tuple[int | None, ...]) -> Any:
    daily, source = data.engagement_daily(_reader)
    weekly = data.period_totals(_reader, "week")
    monthly = data.period_totals(_reader, "month")
    complete = set(daily.loc[~daily["incomplete"].astype(bool), "event_date"]) if daily is not None else set()
    season = data.weekday_seasonality(_reader, complete)
    movers, movers_note = data.top_movers(_reader)
    return daily, source, weekly, monthly, season, movers, movers_note


@st.cache_data(show_spinner=False)
def quality(_reader: data.LakeReader, root: str, versions: tuple[int | None, ...]) -> Any:
    return data.dq_runs(_reader), data.hourly_completeness(_reader), data.conservation(_reader)


@st.cache_data(ttl=REGISTRY_TTL_S, show_spinner=False)
def versions(uri: str | None, name: str) -> tuple[list[registry.VersionInfo], str | None]:
    try:
        return registry.model_versions(uri, name), None
    except registry.RegistryUnavailable as exc:
        return [], str(exc)


@st.cache_data(ttl=REGISTRY_TTL_S, show_spinner=False)
def backtest(uri: str, experiment_id: str | None) -> dict[str, float]:
    return registry.latest_backtest(uri, experiment_id)


@st.cache_data(show_spinner=False)
def figures(uri: str, run_id: str) -> dict[str, bytes]:
    return registry.figures(uri, run_id)  # a run's artifacts never change: no TTL


def table_versions(*tables: str) -> tuple[int | None, ...]:
    r = reader()
    return tuple(r.version(t) for t in tables)


def production_version() -> tuple[registry.VersionInfo | None, list[registry.VersionInfo], str | None]:
    """The version the serving alias names, every version, and why there are none (if so)."""
    s = settings()
    found, error = versions(tracking_uri(s), s.serving.model_name)
    return registry.production(found, s.serving.model_alias), found, error


def production_scores() -> tuple[pd.DataFrame | None, str | None, str | None]:
    """Scores of the production version (or, without a registry, of the newest scored version)."""
    prod, _, error = production_version()
    r = reader()
    (version,) = table_versions(GOLD_SCORES)
    if version is None:
        return None, None, error
    wanted = prod.version if prod else None
    frame = scores(r, r.root, version, wanted)
    if frame is not None and wanted is None and len(frame):
        newest = max(frame["model_version"], key=lambda v: int(v) if str(v).isdigit() else 0)
        frame, wanted = frame[frame["model_version"] == newest], newest
    return frame, wanted, error
