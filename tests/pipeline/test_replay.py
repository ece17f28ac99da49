"""The real-data replay: domain codes, exact hourly sums, determinism, and ingest reading it."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from wikichurn.sim.mirror import serve_mirror
from wikichurn.sim.replay import REPLAY_MANIFEST, domain_codes, read_daily, replay
from wikichurn.sim.simulate import daily_totals

REAL = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "real"
WIKIS = ["bgwiktionary", "biwikibooks", "arwiki"]


@pytest.mark.parametrize(
    ("db", "desktop", "mobile"),
    [
        ("arwiki", "ar", "ar.m"),
        ("bgwiktionary", "bg.d", "bg.m.d"),
        ("biwikibooks", "bi.b", "bi.m.b"),
        ("bgwikiquote", "bg.q", "bg.m.q"),
        ("bgwikisource", "bg.s", "bg.m.s"),
        ("be_x_oldwiki", "be-x-old", "be-x-old.m"),
    ],
)
def test_domain_codes(db: str, desktop: str, mobile: str) -> None:
    codes = domain_codes(db)
    assert (codes["desktop"], codes["mobile"]) == (desktop, mobile)
    assert codes["zero"] == desktop.replace(".", ".zero.", 1) if "." in desktop else desktop + ".zero"


def test_bad_names_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="project suffix"):
        domain_codes("commons")
    bad = tmp_path / "xxwiki.csv"
    bad.write_text("Date,Views\n2014-01-01,3\n")
    with pytest.raises(ValueError, match="header"):
        read_daily(bad)
    bad.write_text("Date,Total,Desktop site,Mobile site,Zero site\n2014-01-01,3,x,,\n")
    with pytest.raises(ValueError):
        read_daily(bad)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    replay(REAL, out, start=date(2014, 9, 1), end=date(2014, 10, 31), wikis=WIKIS, seed=3)
    return out


def test_hours_sum_exactly_to_the_real_daily_totals(replayed: Path) -> None:
    got = daily_totals(replayed)
    assert min(got.attrs["hours"].values()) == 24
    for db in WIKIS:
        daily = read_daily(REAL / f"{db}.csv")
        daily = daily.loc[(daily.index >= date(2014, 9, 1)) & (daily.index <= date(2014, 10, 31))]
        for access, code in domain_codes(db).items():
            expected = daily[access].fillna(0).astype("int64")
            if expected.sum() == 0:
                assert code not in got.columns
                continue
            actual = got[code].reindex(expected.index).fillna(0).astype("int64")
            assert actual.tolist() == expected.tolist(), (db, access)
    # Mobile appears on 2014-09-23 (the source's definition change), desktop is there throughout.
    mobile = got["ar.m"]
    assert mobile[mobile.index < date(2014, 9, 23)].sum() == 0 and mobile[date(2014, 9, 23)] > 0


def test_diurnal_spread_and_determinism(replayed: Path, tmp_path: Path) -> None:
    lines = (replayed / "2014/2014-10/projectviews-20141015-030000").read_text().splitlines()
    noon = (replayed / "2014/2014-10/projectviews-20141015-110000").read_text().splitlines()
    night = {ln.split()[0]: int(ln.split()[2]) for ln in lines}
    day = {ln.split()[0]: int(ln.split()[2]) for ln in noon}
    assert [ln.split()[0] for ln in lines] == sorted(ln.split()[0] for ln in lines)
    assert day["ar"] > 1.5 * night["ar"]  # 03 UTC is 06 in Arabic-reading time zones, 11 UTC is 14
    again = tmp_path / "again"
    replay(REAL, again, start=date(2014, 9, 1), end=date(2014, 10, 31), wikis=WIKIS, seed=3)
    for name in ("2014/2014-10/projectviews-20141015-030000", "2014/2014-09/index.html", REPLAY_MANIFEST):
        assert (again / name).read_bytes() == (replayed / name).read_bytes()
    with pytest.raises(FileExistsError):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "x").write_text("keep me")
        replay(REAL, tmp_path / "busy", wikis=WIKIS)
    assert (tmp_path / "busy" / "x").read_text() == "keep me"


def test_ingest_reads_the_replayed_mirror(replayed: Path, tmp_path: Path) -> None:
    from wikichurn.core.settings import Settings
    from wikichurn.pipeline.ingest.land import ingest

    settings = Settings(raw_uri=str(tmp_path / "raw"), lake_uri=str(tmp_path / "lake"))
    with serve_mirror(replayed) as url:
        summary = ingest(url, settings.raw_uri, date(2014, 10, 1), date(2014, 10, 3), settings)
    assert not summary.failed
    landed = sorted(p.name for p in (tmp_path / "raw").rglob("projectviews-*"))
    assert len(landed) == 72
    src = sorted((replayed / "2014/2014-10").glob("projectviews-2014100[1-3]-*"))
    dst = {p.name: p for p in (tmp_path / "raw").rglob("projectviews-*")}
    assert all(dst[p.name].read_bytes() == p.read_bytes() for p in src)
    shutil.rmtree(tmp_path / "raw")
