"""Dashboard page load times in headless Chromium, on a lake made by ``wikichurn demo``.

    python benchmarks/bench_dashboard.py --workdir data/demo [--screenshots docs/img] [--rounds 3]

Starts the dashboard (``streamlit run``) on ``<workdir>/lake`` with a tracking server on
``<workdir>/mlflow``, opens every page ``rounds`` times and records, per page, the seconds from
navigation until the page is fully drawn (title, the footer line that ends every page script, no
loading skeleton, every chart and image drawn). The first visit of a page fills its caches
(``cold``); later visits are warm. A visit by URL reloads the whole app (its JavaScript bundle and
a new session); switching pages through the sidebar, as a user does, is measured separately.
Writes ``docs/benchmarks-dashboard.json``; with ``--screenshots`` also a small PNG per page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dashboard.browser import PAGES, chromium_path, load_page, running_dashboard, switch_page  # noqa: E402
from wikichurn.training.server import tracking_server  # noqa: E402

README_WIDTH = 1100


def shrink(png: Path, width: int = README_WIDTH) -> None:
    """Scale a screenshot down and quantise it, so the committed PNG stays small."""
    from PIL import Image

    with Image.open(png) as image:
        height = round(image.height * width / image.width)
        small = image.convert("RGB").resize((width, height), Image.LANCZOS).quantize(colors=128)
        small.save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "data" / "demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks-dashboard.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    runs: dict[str, list[float]] = {(path or "at-risk"): [] for path in PAGES}
    switches: dict[str, list[float]] = {(path or "at-risk"): [] for path in PAGES}
    with (
        tracking_server(args.workdir / "mlflow") as server,
        running_dashboard(str(args.workdir / "lake"), server.url, args.workdir / "dashboard-bench") as dashboard,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        for round_ in range(args.rounds):
            for path, title in PAGES.items():
                name = path or "at-risk"
                runs[name].append(load_page(page, f"{dashboard.url}/{path}", title))
                print(f"round {round_}: {name} {runs[name][-1]:.2f} s")
                if args.screenshots and round_ == args.rounds - 1:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    page.wait_for_timeout(500)
                    shot = args.screenshots / f"dashboard-{name}.png"
                    page.screenshot(path=str(shot))
                    shrink(shot)
        # Switching pages through the sidebar, as a user does: the app is not reloaded.
        load_page(page, dashboard.url, PAGES[""])
        for round_ in range(args.rounds):
            for path, title in [*list(PAGES.items())[1:], ("", PAGES[""])]:
                name = path or "at-risk"
                switches[name].append(switch_page(page, path, title))
                print(f"switch {round_}: {name} {switches[name][-1]:.2f} s")
        browser.close()
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other jobs (load varies)",
        "lake": str(args.workdir / "lake"),
        "rounds": args.rounds,
        "pages": {
            name: {
                "cold_s": round(times[0], 3),
                "warm_median_s": round(statistics.median(times[1:]), 3) if len(times) > 1 else None,
                "all_s": [round(t, 3) for t in times],
            }
            for name, times in runs.items()
        },
        "switch_via_sidebar": {
            name: {"median_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times]}
            for name, times in switches.items()
        },
        "load_average": os.getloadavg()[0],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("pages", "switch_via_sidebar")}, indent=2))


if __name__ == "__main__":
    main()
