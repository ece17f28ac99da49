"""The simulated dumps mirror: layout, determinism, defects, realism and the churn-rate target."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wikichurn.core.layout import key_for, parse_file_time
from wikichurn.sim.simulate import (
    MALFORMED_KINDS,
    MANIFEST_NAME,
    SimulationModel,
    _missing,
    churn_labels,
    churn_positive_rate,
    daily_totals,
    load_manifest,
    max_domains,
    simulate,
)

START = date(2024, 1, 1)
END = date(2024, 2, 29)  # 60 days
DOMAINS = 300
SEED = 1

PROJECTVIEWS_PATH = re.compile(r"^(\d{4})/(\d{4})-(\d{2})/projectviews-(\d{8})-(\d{2})0000$")
DECOY_NAME = re.compile(r"^pageviews-\d{8}-\d{2}0000\.gz$")
ROW = re.compile(r'^<a href="([^"]+)">([^<]+)</a>( +)(\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}) +(-|\d+)$')
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    """A 60-day x 300-domain simulation shared by the module (about a second)."""
    out = tmp_path_factory.mktemp("sim") / "mirror"
    summary = simulate(out, START, END, domains=DOMAINS, seed=SEED)
    return out, summary


@pytest.fixture(scope="module")
def daily(sim) -> pd.DataFrame:
    out, _ = sim
    return daily_totals(out)


def _projectviews(out: Path) -> list[Path]:
    return sorted(out.glob("*/*/projectviews-*"))


def _classify(text: str) -> tuple[Counter, int, int]:
    """Malformed kinds, blank lines and non-blank lines of one file, by parsing it."""
    kinds: Counter = Counter()
    blank = total = 0
    seen: set[str] = set()
    for line in text.split("\n"):
        if line == "":
            blank += 1
            continue
        total += 1
        parts = line.split(" ")
        if len(parts) != 4:
            kinds["wrong_field_count"] += 1
        elif parts[0] == "":
            kinds["empty_domain"] += 1
        elif parts[1] != "-":
            kinds["unexpected_page_title"] += 1
        elif not re.fullmatch(r"-?\d+", parts[2]):
            kinds["non_numeric_count"] += 1
        elif parts[2].startswith("-"):
            kinds["negative_count"] += 1
        elif parts[0] in seen:
            kinds["duplicate_domain"] += 1
        else:
            seen.add(parts[0])
    return kinds, blank - 1, total  # the final newline leaves one empty string


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first = simulate(tmp_path / "a", date(2024, 3, 30), date(2024, 4, 2), domains=80, seed=5)
    second = simulate(tmp_path / "b", date(2024, 3, 30), date(2024, 4, 2), domains=80, seed=5)
    other = simulate(tmp_path / "c", date(2024, 3, 30), date(2024, 4, 2), domains=80, seed=6)
    a, b, c = (_tree_bytes(tmp_path / x) for x in "abc")
    # the manifests name their own folder nowhere, so whole trees compare equal
    assert a == b
    assert first.lines == second.lines and first.missing_hours == second.missing_hours
    assert a != c
    assert any(a[k] != c.get(k) for k in a if "projectviews-" in k)
    assert other.seed == 6


def test_rerun_replaces_a_previous_simulation_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out = tmp_path / "m"
    simulate(out, date(2024, 5, 1), date(2024, 5, 3), domains=20, seed=2)
    simulate(out, date(2024, 6, 1), date(2024, 6, 1), domains=20, seed=2)
    assert not (out / "2024" / "2024-05").exists()
    assert sorted(p.name for p in out.iterdir()) == ["2024", "index.html", MANIFEST_NAME]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        simulate(foreign, date(2024, 5, 1), date(2024, 5, 1), domains=5)
    with pytest.raises(ValueError):
        simulate(tmp_path / "x", date(2024, 5, 2), date(2024, 5, 1))
    with pytest.raises(ValueError):
        simulate(tmp_path / "y", date(2024, 5, 1), date(2024, 5, 1), domains=max_domains() + 1)


def test_layout_names_and_missing_hours(sim) -> None:
    out, summary = sim
    files = _projectviews(out)
    manifest = load_manifest(out)
    all_hours = {
        f"projectviews-{datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=h):%Y%m%d-%H}0000" for h in range(60 * 24)
    }
    written = {p.name for p in files}
    assert len(files) == summary.hourly_files == manifest["counts"]["hourly_files"]
    assert written | set(summary.missing_hours) == all_hours
    assert not written & set(summary.missing_hours)
    assert manifest["counts"]["missing_hours"] == summary.missing_hours
    for path in files:
        rel = str(path.relative_to(out))
        assert PROJECTVIEWS_PATH.match(rel), rel
        assert key_for(path.name) == rel
    # everything else in the tree: listings, decoys and the manifest
    others = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {str(p.relative_to(out)) for p in files}
    assert {o for o in others if not (o.endswith("index.html") or DECOY_NAME.match(Path(o).name))} == {MANIFEST_NAME}


def test_missing_hours_rate_and_runs() -> None:
    model = SimulationModel()
    missing = _missing(3 * 365, np.random.default_rng(0), model)
    assert 0.002 < missing.mean() < 0.01
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(int), [0]]))))[::2]
    assert runs.max() >= 3  # whole outages, several hours in a row
    assert (runs == 1).sum() >= 1  # and single lost hours


def test_lines_are_well_formed_sorted_and_never_zero(sim) -> None:
    out, summary = sim
    codes = {d["code"] for d in load_manifest(out)["domains"]}
    seen_codes: set[str] = set()
    for path in _projectviews(out)[::7]:
        previous = ""
        for line in path.read_text().splitlines():
            parts = line.split(" ")
            if not line or not parts[0]:
                continue
            assert parts[0] >= previous, f"{path.name}: {parts[0]} after {previous}"
            previous = parts[0]
            if len(parts) == 4 and parts[1] == "-" and parts[2].isdigit():
                assert parts[3] == "0"
                assert int(parts[2]) > 0  # a zero-view hour is an absent line
                assert parts[0] in codes
                seen_codes.add(parts[0])
    assert len(codes) == summary.domains == DOMAINS
    assert len(seen_codes) > 0.9 * DOMAINS
    # the real code scheme: mobile, sister projects, specials
    assert {"en", "en.m", "de", "de.m"} <= codes
    assert any(re.fullmatch(r"[a-z-]+\.m\.(d|s|q|b|voy|n|v)", c) for c in codes)
    assert any(c.endswith(".m.m") or c in ("commons.m", "www.wd", "meta.m") for c in codes)


def test_every_malformed_kind_is_present_and_counted_exactly(sim) -> None:
    out, summary = sim
    kinds: Counter = Counter()
    blank = total = 0
    for path in _projectviews(out):
        k, b, t = _classify(path.read_text())
        kinds.update(k)
        blank += b
        total += t
    manifest = load_manifest(out)["counts"]
    assert dict(kinds) == {k: v for k, v in summary.malformed.items() if v}
    assert summary.malformed == manifest["malformed"]
    assert set(summary.malformed) == set(MALFORMED_KINDS)
    assert all(summary.malformed[k] > 0 for k in MALFORMED_KINDS), summary.malformed
    assert blank == summary.blank_lines == manifest["blank_lines"] > 0
    assert total == summary.lines == manifest["lines"]
    assert summary.valid_lines == total - sum(kinds.values())
    assert 0.0002 < sum(kinds.values()) / total < 0.001  # ~0.05 %


def test_decoys_are_small_gzip_per_page_files_ingestion_ignores(sim) -> None:
    out, summary = sim
    decoys = sorted(out.glob("*/*/pageviews-*.gz"))
    manifest = load_manifest(out)["counts"]
    assert len(decoys) == summary.decoys == len(manifest["decoy_files"]) == 6  # 3 per month
    assert sorted(str(p.relative_to(out)) for p in decoys) == sorted(manifest["decoy_files"])
    for path in decoys:
        assert parse_file_time(path.name) is None
        assert path.stat().st_size < 10_000
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        assert lines
        for line in lines:
            domain, title, count, size = line.split(" ")
            assert title != "-" and int(count) > 0 and size == "0"


def test_volumes_are_heavy_tailed(sim) -> None:
    out, _ = sim
    counts = []
    for path in sorted(out.glob("2024/2024-02/projectviews-20240212-*")):
        for line in path.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) == 4 and parts[0] and parts[1] == "-" and parts[2].isdigit():
                counts.append(int(parts[2]))
    values = np.asarray(counts)
    assert values.max() >= 1_000_000  # millions per hour for the biggest code
    assert values.max() >= 2e4 * np.median(values)
    assert (values < 10).mean() > 0.15  # and many codes with single digits


def test_weekly_and_daily_seasonality_are_visible(sim, daily: pd.DataFrame) -> None:
    out, _ = sim
    domains = load_manifest(out)["domains"]
    desktop = [d["code"] for d in domains if d["access"] == "desktop"]
    mobile = [d["code"] for d in domains if d["access"] == "mobile"]
    weekday = pd.to_datetime(daily.index).dayofweek
    for codes, check in ((desktop, "desktop"), (mobile, "mobile")):
        total = daily[codes].sum(axis=1)
        relative = total / total.rolling(7, center=True).mean()
        by_day = relative.groupby(weekday).mean()
        if check == "desktop":
            assert by_day[5] < by_day[[0, 1, 2]].mean() - 0.08  # Saturday dip
        else:
            assert by_day[6] > by_day[[1, 2, 3]].mean() + 0.05  # Sunday bump on mobile
    # daily cycle: the busiest hour of the day carries far more than the quietest (de, one time zone)
    hours = []
    for path in sorted(out.glob("2024/2024-01/projectviews-20240117-*")):
        for line in path.read_text().splitlines():
            if line.startswith("de - "):
                hours.append(int(line.split(" ")[2]))
    assert max(hours) > 2.5 * min(hours)


def test_churn_positive_rate_is_about_ten_percent(sim, daily: pd.DataFrame) -> None:
    out, _ = sim
    rate = churn_positive_rate(out)
    assert 0.06 <= rate <= 0.15, rate
    strict = churn_labels(daily).to_numpy().ravel()
    strict = strict[~np.isnan(strict)]
    assert len(strict) > 1000
    assert 0.06 <= strict.mean() <= 0.15


def test_ground_truth_collapses_show_in_the_files(sim, daily: pd.DataFrame) -> None:
    out, summary = sim
    manifest = load_manifest(out)
    events = [e for e in manifest["churn_events"] if e["kind"] == "collapse"]
    assert len(events) == sum(1 for e in manifest["churn_events"] if e["kind"] == "collapse") > 20
    assert summary.churn_events == len(manifest["churn_events"])
    dates = list(daily.index)
    declined = {}
    for ramp in manifest["declines"]:
        begin = datetime.strptime(ramp["start_hour"], "%Y-%m-%dT%H:00Z") + timedelta(days=ramp["days"])
        declined[(ramp["domain"], begin.strftime("%Y-%m-%dT%H:00Z"))] = ramp["days"] + 1
    checked = dropped = 0
    for event in events:
        start = date.fromisoformat(event["start"])
        if start - timedelta(days=3) < dates[0] or start + timedelta(days=1) > dates[-1]:
            continue
        if event["end"] is not None and date.fromisoformat(event["end"]) <= start + timedelta(days=2):
            continue
        series = daily[event["domain"]]
        # A collapse preceded by a slow decline (calibration, docs/simulator.md) drops from the
        # level before the decline began, so that is the reference then.
        ramp = declined.get((event["domain"], event["start_hour"]), 0)
        ref = start - timedelta(days=ramp)
        before = series[ref - timedelta(days=3) : ref - timedelta(days=1)].mean()
        if ramp and ref - timedelta(days=3) < dates[0]:
            continue
        if before < 500:  # too small for the day totals to be read exactly
            continue
        checked += 1
        dropped += series[start + timedelta(days=1)] <= 0.3 * before
    assert checked >= 10
    assert dropped >= 0.9 * checked


def test_listings_parse_and_sizes_match(sim) -> None:
    out, _ = sim
    month = out / "2024" / "2024-01"
    page = (month / "index.html").read_text()

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.title = ""
            self.hrefs: list[str] = []

        def handle_starttag(self, tag: str, attrs) -> None:
            self.open.append(tag)
            self.hrefs += [v for k, v in attrs if tag == "a" and k == "href" and v]

        def handle_endtag(self, tag: str) -> None:
            if self.open and self.open[-1] == tag:
                self.open.pop()

        def handle_data(self, data: str) -> None:
            if self.open and self.open[-1] == "title":
                self.title += data

    checker = Checker()
    checker.feed(page)
    assert checker.title == "Index of /other/pageviews/2024/2024-01/"
    assert page.startswith("<html>\n<head><title>Index of /other/pageviews/2024/2024-01/</title></head>")
    assert '<pre><a href="../">../</a>\n' in page and page.rstrip().endswith("</pre><hr></body>\n</html>")
    rows = [ROW.match(line) for line in page.splitlines() if line.startswith('<a href="') and "../" not in line]
    assert rows and all(rows)
    listed = {m.group(1): m for m in rows if m}
    on_disk = {p.name for p in month.iterdir()} - {"index.html"}
    assert set(listed) == on_disk == set(checker.hrefs) - {"../"}
    for name, m in listed.items():
        assert m.group(1) == m.group(2)
        assert len(m.group(2)) + len(m.group(3)) == 51  # nginx pads names to 50 columns
        assert int(m.group(5)) == (month / name).stat().st_size
        day, mon, rest = m.group(4).split("-")
        shown = datetime.strptime(f"{day}-{MONTHS.index(mon) + 1:02d}-{rest}", "%d-%m-%Y %H:%M")
        stamp = name.split("-")[1] + name.split("-")[2][:2]
        hour = datetime.strptime(stamp.replace(".gz", ""), "%Y%m%d%H")
        assert timedelta(minutes=30) <= shown - hour <= timedelta(minutes=96)
    # year and root listings: directories with '-' for the size
    year = (out / "2024" / "index.html").read_text()
    assert re.search(r'<a href="2024-01/">2024-01/</a> +\d{2}-Feb-2024 \d{2}:\d{2} +-\n', year)
    assert re.search(r'<a href="2024-02/">2024-02/</a> +\d{2}-(Feb|Mar)-2024 \d{2}:\d{2} +-\n', year)
    root = (out / "index.html").read_text()
    assert "Index of /other/pageviews/</title>" in root and '<a href="2024/">2024/</a>' in root


def test_manifest_and_summary(sim) -> None:
    out, summary = sim
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["parameters"]["start"] == START.isoformat()
    assert manifest["parameters"]["domains"] == DOMAINS and manifest["parameters"]["seed"] == SEED
    assert manifest["parameters"]["model"]["malformed_rate"] == SimulationModel().malformed_rate
    for event in manifest["churn_events"]:
        assert set(event) >= {"domain", "kind", "start", "start_hour", "end", "level"}
        assert 0 <= event["level"] <= 0.25
    text = summary.describe()
    assert f"{summary.hourly_files:,}" in text and "malformed" in text and str(summary.out) in text
    assert summary.bytes_written > 0 and summary.spikes == len(manifest["spikes"])
