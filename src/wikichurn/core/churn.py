"""The churn definition and the domain-code parser; the feature catalogue's public names.

The features and labels are declared once in :mod:`wikichurn.core.featurespec` and compiled to Spark
(``wikichurn.pipeline.lakehouse.features``) and to numpy (:mod:`wikichurn.core.columnar`). This
module imports neither Spark nor MLflow.

Label. A domain *churns* on day t if, within the next ``horizon_days`` days, its daily views fall
to at most ``factor`` x its mean over the ``window_days`` days before t (t excluded)::

    churn(t) = min(v[t+1 .. t+H]) <= factor * mean(v[t-W .. t-1])

Calendar. A domain exists from the first day it had views to the last day the lake has files for.
Inside that span a day the domain is absent from is a day of zero views; a day whose hourly files
are missing (fewer than ``min_hours_complete``) is a data gap, and with the ``strict`` policy any
label whose past window or future horizon touches one is unavailable (``rescale`` first scales days
with at least ``min_hours_rescale`` files to 24 hours and treats only sparser days as gaps; with
``rescale``, ``count_views`` stays as observed while every statistic uses the scaled series), as is a label whose past
window or horizon is not fully inside the calendar, and one whose past mean is zero (a dead domain
cannot collapse).

Features use day t and earlier only; the label-only columns never reach a model.
"""

from __future__ import annotations

from dataclasses import dataclass

# The feature and label columns are declared in featurespec; these names are their public face.
from wikichurn.core.featurespec import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    HISTORY_FEATURES,
    KEY_COLUMNS,
    LABEL_ONLY_COLUMNS,
    SEED_FEATURES,
    feature_columns,
    keyed_feature_columns,
    label_columns,
    seed_features,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURE_COLUMNS",
    "HISTORY_FEATURES",
    "KEY_COLUMNS",
    "LABEL_ONLY_COLUMNS",
    "SEED_FEATURES",
    "DomainInfo",
    "feature_columns",
    "keyed_feature_columns",
    "label_columns",
    "parse_domain_code",
    "seed_features",
]

PROJECT_FAMILIES: dict[str, str] = {
    "": "wikipedia",
    "b": "wikibooks",
    "d": "wiktionary",
    "f": "wikimediafoundation",
    "m": "wikimedia",
    "n": "wikinews",
    "q": "wikiquote",
    "s": "wikisource",
    "v": "wikiversity",
    "voy": "wikivoyage",
    "w": "mediawiki",
    "wd": "wikidata",
}
# Wikimedia-wide sites whose desktop code is `<site>.m` (mobile is `<site>.m.m`).
WIKIMEDIA_SITES = frozenset(
    {"commons", "meta", "species", "incubator", "outreach", "strategy", "foundation", "wikimania", "login"}
)


@dataclass(frozen=True)
class DomainInfo:
    """What a domain code says about a wiki."""

    language: str
    project_family: str
    access: str  # desktop | mobile | zero


def parse_domain_code(code: str) -> DomainInfo:
    """Parse ``<lang>[.m|.zero][.<project>]`` (e.g. ``de.m.s`` = mobile German wikisource).

    ``.m`` is ambiguous: ``en.m`` is mobile English Wikipedia but ``commons.m`` is desktop Commons
    (mobile Commons is ``commons.m.m``). Unknown suffixes give project family ``other``.
    """
    parts = code.split(".")
    language, rest = parts[0], parts[1:]
    if language in WIKIMEDIA_SITES and rest[:1] == ["m"]:
        rest = rest[1:]
        access = "mobile" if rest[:1] == ["m"] else "desktop"
        return DomainInfo(language, "wikimedia", access)
    access = "desktop"
    if rest[:1] in (["m"], ["zero"]):
        access = "mobile" if rest[0] == "m" else "zero"
        rest = rest[1:]
    suffix = rest[0] if rest else ""
    family = PROJECT_FAMILIES.get(suffix, "other") if len(rest) <= 1 else "other"
    return DomainInfo(language, family, access)
