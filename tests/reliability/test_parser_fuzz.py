"""Bad input, fuzzed: raw lines and hostile raw files against a reference grammar written here.

The reference below re-states the README's data-quality rules in plain Python, without importing
(or copying) the regular expressions of ``pipeline/lakehouse/silver.py``. Hypothesis generates raw
files (unicode, control characters, NUL bytes, tabs, CRLF, invalid UTF-8, huge numbers, very
long lines, repeated domains, two files naming one hour) and every line must land in exactly one
of clean / quarantine with the reason the reference predicts. Each example is one Spark job over
a few hundred lines, so the whole fuzz runs in seconds.
"""

from __future__ import annotations

import gzip
import os
import string
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from tests.utils.raw import write_raw
from wikichurn.core import tables
from wikichurn.core.settings import Settings
from wikichurn.pipeline.lakehouse.bronze import build_bronze
from wikichurn.pipeline.lakehouse.lake import Lake
from wikichurn.pipeline.lakehouse.run import run_pipeline
from wikichurn.pipeline.lakehouse.silver import parse_bronze

RAW_ROOT = "/raw"
RUN_AT = datetime(2024, 6, 1, 12, 0)
# Files of one example: two name the same hour (seconds differ), one another hour, one no hour.
FILES = {
    "a": ("2024/2024-01/projectviews-20240101-000000", datetime(2024, 1, 1, 0)),
    "b": ("2024/2024-01/projectviews-20240101-000005", datetime(2024, 1, 1, 0)),
    "c": ("2024/2024-01/projectviews-20240101-010000", datetime(2024, 1, 1, 1)),
    "d": ("2024/2024-13/projectviews-20241301-000000", None),
}

# -- the reference grammar ---------------------------------------------------------------------

ASCII_WORD = set(string.ascii_letters + string.digits + "_-")
ALNUM = set(string.ascii_letters + string.digits)
BIGINT_MAX = 2**63 - 1


def reference_lines(content: bytes) -> list[str]:
    """Lines as bronze keeps them: UTF-8 (invalid bytes -> U+FFFD), split on LF, one CR dropped, blanks out."""
    lines = []
    for line in content.decode("utf-8", errors="replace").split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if line:
            lines.append(line)
    return lines


def domain_ok(domain: str) -> bool:
    parts = domain.split(".")
    return domain[:1] in ALNUM and all(parts) and all(set(part) <= ASCII_WORD for part in parts)


def row_reason(line: str, hour: datetime | None) -> str | None:
    if hour is None:
        return "unparseable_file_name"
    if not datetime(2015, 5, 1) <= hour <= RUN_AT:
        return "file_date_out_of_range"
    fields = line.split(" ")
    if len(fields) != 4:
        return "wrong_field_count"
    domain, title, count, _size = fields
    if domain == "":
        return "empty_domain"
    if not domain_ok(domain):
        return "invalid_domain"
    if title != "-":
        return "unexpected_page_title"
    digits = count[1:] if count.startswith("-") else count
    if not digits or not set(digits) <= set(string.digits):
        return "non_numeric_count"
    if count.startswith("-"):
        return "negative_count"
    if int(count) > BIGINT_MAX:
        return "count_out_of_range"
    return None


def reference(files: dict[str, bytes]) -> Counter:
    """Counter of (source path, line, reason or None) the rules must give."""
    judged = []
    for name, content in files.items():
        key, hour = FILES[name]
        judged += [(f"{RAW_ROOT}/{key}", line, hour, row_reason(line, hour)) for line in reference_lines(content)]
    per_hour = Counter((hour, line.split(" ")[0]) for _p, line, hour, reason in judged if reason is None)
    return Counter(
        (path, line, reason or ("duplicate_domain_in_hour" if per_hour[(hour, line.split(" ")[0])] > 1 else None))
        for path, line, hour, reason in judged
    )


# -- generated input ---------------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
domains = st.one_of(
    st.sampled_from(["en", "de.m", "commons.m", "zh-min-nan", "be-tarask", "en.m.d", "a_b", "ja.zero", "X9"]),
    st.from_regex(r"[a-z]{1,3}(\.[a-z_-]{1,2}){0,2}", fullmatch=True),
    st.sampled_from(["", ".en", "en.", "en..m", "-en", "_en", "en\t", "ｅｎ", "en\x00", "é", "en\u2028", "\x7f"]),
    any_text,
)
titles = st.one_of(st.just("-"), st.just("-"), st.sampled_from(["", "--", "Main_Page", "-\t", "\u2212"]), any_text)
counts = st.one_of(
    st.integers(0, 10**7).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        ["", "+5", "007", "-0", "1e5", "١٢", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
         "5\t", "0x10", "1_000", "\x005", "4" * 40]
    ),
    any_text,
)  # fmt: skip
sizes = st.one_of(st.just("0"), st.integers(0, 10**9).map(str), any_text)
seps = st.sampled_from([" "] * 12 + ["  ", "\t", "", " \u00a0"])


@st.composite
def raw_line(draw: st.DrawFn) -> bytes:
    fields = [draw(domains), draw(titles), draw(counts), draw(sizes)]
    fields += draw(st.lists(any_text, max_size=1))  # sometimes a fifth field
    text = fields[0]
    for field in fields[1:]:
        text += draw(seps) + field
    data = text.encode()
    if draw(st.integers(0, 9)) == 0:  # raw bytes spliced in: invalid UTF-8, NUL, CR, lone LF
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if draw(st.integers(0, 60)) == 0:  # a very long line
        data = data + b"9" * draw(st.integers(10_000, 300_000))
    return data + draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r\r\n", b"\n\n"]))


example_files = st.lists(st.tuples(st.sampled_from(sorted(FILES)), raw_line()), min_size=20, max_size=250).map(
    lambda pairs: {name: b"".join(line for n, line in pairs if n == name) for name in sorted(FILES)}
)

BINARY_FILE_SCHEMA = StructType([StructField("path", StringType()), StructField("content", BinaryType())])


def engine(spark: SparkSession, files: dict[str, bytes]) -> Counter:
    rows = [(f"file:{RAW_ROOT}/{FILES[name][0]}", content) for name, content in files.items()]
    bronze = build_bronze(spark.createDataFrame(rows, BINARY_FILE_SCHEMA), RAW_ROOT, RUN_AT)
    parsed = parse_bronze(bronze).select("_source_path", "value", "dq_reason").collect()
    return Counter((r["_source_path"], r["value"], r["dq_reason"]) for r in parsed)


FUZZ_EXAMPLES = int(os.environ.get("WIKICHURN_FUZZ_EXAMPLES", "40"))


@given(files=example_files)
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
def test_every_line_lands_where_the_grammar_says(spark: SparkSession, files: dict[str, bytes]) -> None:
    assert engine(spark, files) == reference(files)


def test_the_reference_grammar_knows_the_readme_examples() -> None:
    # The grammar itself is checked against hand-written verdicts, so a fuzz pass means something.
    hour = datetime(2024, 1, 1)
    assert row_reason("en - 5 0", hour) is None
    assert row_reason("en - 5", hour) == "wrong_field_count"
    assert row_reason("en  - 5 0", hour) == "wrong_field_count"
    assert row_reason(" - 5 0", hour) == "empty_domain"
    assert row_reason("en..m - 5 0", hour) == "invalid_domain"
    assert row_reason("en Main 5 0", hour) == "unexpected_page_title"
    assert row_reason("en - 5x 0", hour) == "non_numeric_count"
    assert row_reason("en - -5 0", hour) == "negative_count"
    assert row_reason("en - 9223372036854775808 0", hour) == "count_out_of_range"
    assert row_reason("en - 5 0", datetime(2015, 4, 30, 23)) == "file_date_out_of_range"
    assert row_reason("en - 5 0", None) == "unparseable_file_name"
    assert reference_lines(b"a\r\n\r\n\xffb\n") == ["a", "\ufffdb"]


# -- hostile raw files, through the whole pipeline -----------------------------------------------


def land(settings: Settings, key: str, data: bytes) -> Path:
    target = Path(settings.raw_uri) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def test_hostile_raw_files_are_quarantined_or_refused(spark: SparkSession, lake_settings: Settings) -> None:
    write_raw(lake_settings, "projectviews-20240101-000000", ["en - 10 0", "de - 3 0"])
    binary = bytes(range(256)) * 40 + b"\n" + os.urandom(4000)
    land(lake_settings, "2024/2024-01/projectviews-20240101-010000", binary)
    land(lake_settings, "2024/2024-01/projectviews-20240101-020000", b"")  # 0 bytes
    land(lake_settings, "2024/2024-01/projectviews-20240101-030000", gzip.compress(b"en - 10 0\n" * 500))
    # 1 GB on one line, sparse: refused by its listed size, never read (so never written either).
    huge = land(lake_settings, "2024/2024-01/projectviews-20240101-040000", b"")
    with huge.open("r+b") as handle:
        handle.truncate(1 << 30)
    future = datetime.now(UTC) + (datetime(2030, 1, 1) - datetime(2029, 1, 1))
    future_name = f"projectviews-{future:%Y%m%d-%H}0000"
    write_raw(lake_settings, future_name, ["en - 10 0"])
    write_raw(lake_settings, "projectviews-20150430-230000", ["en - 10 0"])  # before projectviews existed
    write_raw(lake_settings, "projectviews-20150501-000000", ["en - 10 0"])  # the first real hour

    result = run_pipeline(spark, lake_settings, features=False)

    assert huge.stat().st_blocks < 64  # the sparse file was never filled in by a read
    assert result.files_new == 7 and result.files_ignored == 1  # the 1 GB file is not taken
    lake = Lake(spark, lake_settings)
    quarantine = lake.read(tables.SILVER_QUARANTINE).collect()
    by_file = Counter((r["_source_path"].rsplit("/", 1)[-1][13:], r["dq_reason"]) for r in quarantine)
    assert by_file[(future_name[13:], "file_date_out_of_range")] == 1
    assert by_file[("20150430-230000", "file_date_out_of_range")] == 1
    assert {reason for (name, reason) in by_file if name in ("20240101-010000", "20240101-030000")} <= {
        "wrong_field_count", "empty_domain", "invalid_domain",
    }  # fmt: skip
    clean = {(r["domain_code"], r["event_timestamp"]) for r in lake.read(tables.SILVER_CLEAN).collect()}
    assert clean == {("en", datetime(2024, 1, 1)), ("de", datetime(2024, 1, 1)), ("en", datetime(2015, 5, 1))}
    ledger = {r["file_name"]: r["line_count"] for r in lake.read(tables.BRONZE_LEDGER).collect()}
    assert ledger["projectviews-20240101-020000"] == 0 and "projectviews-20240101-040000" not in ledger
    assert lake.count(tables.BRONZE) == lake.count(tables.SILVER_CLEAN) + lake.count(tables.SILVER_QUARANTINE)
    gold_dates = {r["event_date"] for r in lake.read(tables.GOLD_DAILY).collect()}
    assert {d.year for d in gold_dates} == {2015, 2024}  # no day in the future, none before 2015-05

    again = run_pipeline(spark, lake_settings, features=False)  # the refused file stays refused
    assert again.files_new == 0 and again.files_ignored == 1
