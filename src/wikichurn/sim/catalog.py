"""The catalogue of simulated domain codes: which codes exist, their sizes, time zones, access."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wikichurn.sim.codes import ACCESS, LANGUAGES, PROJECTS, SPECIALS
from wikichurn.sim.model import SimulationModel

# --------------------------------------------------------------------------------------------
# Domain catalog


@dataclass
class Catalog:
    codes: list[str]  # sorted (the order of lines in a file)
    rank: np.ndarray  # 0 = biggest
    level: np.ndarray  # mean hourly views
    access: np.ndarray  # index into ACCESS
    tz: np.ndarray  # UTC offset, hours
    spread: np.ndarray  # True when readers are spread over many time zones


def _candidates(rng: np.random.Generator, model: SimulationModel) -> tuple[list[str], np.ndarray, list]:
    """Every code the simulator may use, with its log prior size and (access, tz, spread)."""
    codes: list[str] = []
    prior: list[float] = []
    attrs: list[tuple[int, float, bool]] = []
    lo, hi = model.mobile_share
    shares = rng.uniform(lo, hi, size=len(LANGUAGES))
    for i, (lang, tz) in enumerate(LANGUAGES):
        size = -model.language_zipf * math.log(i + 1)
        spread = tz is None
        offset = 0.0 if tz is None else float(tz)
        for project, project_share in PROJECTS:
            suffix = f".{project}" if project else ""
            for access, share in (
                ("desktop", 1 - shares[i]),
                ("mobile", shares[i]),
                ("zero", model.zero_share),
            ):
                if access == "zero" and project not in ("", "d"):
                    continue
                middle = {"desktop": "", "mobile": ".m", "zero": ".zero"}[access]
                codes.append(f"{lang}{middle}{suffix}")
                prior.append(size + math.log(project_share) + math.log(share))
                attrs.append((ACCESS.index(access), offset, spread))
    for code, share, access, tz in SPECIALS:
        codes.append(code)
        prior.append(math.log(share))
        attrs.append((ACCESS.index(access), 0.0 if tz is None else tz, tz is None))
    return codes, np.asarray(prior), attrs


def max_domains() -> int:
    """How many distinct domain codes the simulator can produce."""
    n_lang = len(LANGUAGES)
    per_lang = len(PROJECTS) * 2 + 2  # desktop + mobile for every project, zero for two
    return n_lang * per_lang + len(SPECIALS)


def build_catalog(n: int, rng: np.random.Generator, model: SimulationModel) -> Catalog:
    codes, prior, attrs = _candidates(rng, model)
    if n > len(codes):
        raise ValueError(f"at most {len(codes)} domain codes can be simulated, not {n}")
    score = prior + rng.normal(0.0, model.rank_noise, size=len(codes))
    chosen = np.argsort(-score, kind="stable")[:n]  # biggest first
    q = np.arange(n) / max(n - 1, 1)
    hi, lo = math.log10(model.top_hourly_views), math.log10(model.tail_hourly_views)
    log_level = lo + (hi - lo) * (1 - q**model.tail_shape)
    log_level = log_level + rng.normal(0.0, model.level_jitter_log10, size=n) * (q > 0.01)
    level = np.maximum(10**log_level, model.min_hourly_views)
    order = sorted(range(n), key=lambda i: codes[chosen[i]])  # file order: by code
    return Catalog(
        codes=[codes[chosen[i]] for i in order],
        rank=np.asarray(order),
        level=level[order],
        access=np.asarray([attrs[chosen[i]][0] for i in order]),
        tz=np.asarray([attrs[chosen[i]][1] for i in order], dtype=float),
        spread=np.asarray([attrs[chosen[i]][2] for i in order], dtype=bool),
    )
