"""Raw projectviews files written by tests, laid out the way ingestion lands them."""

from __future__ import annotations

from pathlib import Path

from wikichurn.core.settings import Settings


def write_raw(settings: Settings, name: str, lines: list[str]) -> str:
    """Land a raw file the way ingestion does and return its key."""
    key = f"{name[13:17]}/{name[13:17]}-{name[17:19]}/{name}"
    target = Path(settings.raw_uri) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(line + "\n" for line in lines))
    return key


def full_day(settings: Settings, day: str, views: dict[str, int], hours: range = range(24)) -> None:
    """Land one raw file per hour of ``day`` (YYYYMMDD), each with ``views`` per domain."""
    for hour in hours:
        write_raw(settings, f"projectviews-{day}-{hour:02d}0000", [f"{d} - {v} 0" for d, v in sorted(views.items())])
