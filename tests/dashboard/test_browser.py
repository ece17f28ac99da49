"""The dashboard in a real headless Chromium: every page opens, shows the lake's numbers, and is captured.

Screenshots go to ``$WIKICHURN_TEST_ARTIFACTS/dashboard`` (default ``test-artifacts/dashboard`` in the
repository), one PNG per page, for a person to look at; the page load times are written next to them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.dashboard.browser import PAGES, chromium_path, load_page, running_dashboard
from tests.dashboard.test_pages import top_at_risk
from tests.fixtures.scored_lake import ScoredLake

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    root = Path(os.environ.get("WIKICHURN_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder = root / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_every_page_in_headless_chromium(scored_lake: ScoredLake) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no system Chromium (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    out = artifacts_dir()
    top = top_at_risk(scored_lake)
    timings: dict[str, float] = {}
    with (
        running_dashboard(scored_lake.settings.lake_uri, scored_lake.server.url, out) as dashboard,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for path, title in PAGES.items():
                name = path or "at-risk"
                timings[name] = load_page(page, f"{dashboard.url}/{path}", title)
                body = page.inner_text("body")
                assert "Traceback" not in body and "Error" not in page.title(), body[:2000]
                if name == "at-risk":
                    assert f"Top at-risk domain: {top['domain_code']} — risk {top['risk_score']:.3f}" in body
                    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 3
                elif name == "engagement":
                    assert "DAU in views" in body and "Top movers" in body
                elif name == "data-quality":
                    assert "Conservation holds" in body
                else:
                    assert f"version {scored_lake.trained.promotion.version}" in body and "@production" in body
                    assert page.locator('[data-testid="stImage"] img').count() >= 4
                page.wait_for_timeout(500)  # let the data grids paint their canvas
                page.screenshot(path=str(out / f"{name}.png"))
            # A second visit is served from the caches: what a user sees when switching pages.
            for path, title in PAGES.items():
                timings[f"{path or 'at-risk'} (warm)"] = load_page(page, f"{dashboard.url}/{path}", title)
            assert not errors, errors
        finally:
            browser.close()
    (out / "page_load_seconds.json").write_text(json.dumps(timings, indent=2) + "\n")
    for name in ("at-risk", "engagement", "data-quality", "model"):
        assert (out / f"{name}.png").stat().st_size > 20_000
