"""Drive the real dashboard in headless Chromium (Debian's ``chromium``) with Playwright.

Shared by the browser test and ``benchmarks/bench_dashboard.py``. Playwright cannot download its own
browser here, so it launches the system binary (``WIKICHURN_CHROMIUM``, else ``chromium`` on PATH).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wikichurn.dashboard import RENDERED
from wikichurn.dashboard.launch import dashboard_environment, streamlit_command
from wikichurn.training.server import free_port

# url path -> the page's title (At risk is the home page).
PAGES: dict[str, str] = {
    "": "Domains at risk",
    "engagement": "Engagement",
    "data-quality": "Data quality",
    "model": "Model",
}


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    explicit = os.environ.get("WIKICHURN_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def running_dashboard(
    lake_uri: str, tracking_uri: str | None, log_dir: Path, timeout_s: float = 90
) -> Iterator[Dashboard]:
    """``streamlit run`` of the app on a free loopback port until the block ends."""
    port = free_port()
    env = dashboard_environment(lake_uri, tracking_uri)
    if tracking_uri is None:
        env.pop("MLFLOW_TRACKING_URI", None)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "streamlit.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            streamlit_command("127.0.0.1", port), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start; see {log_path}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield Dashboard(url=url, process=process, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_rendered(page: Any, title: str, timeout_ms: float = 60_000) -> None:
    """Until the page's title is shown, the script has finished and every chart is drawn."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_ms)
    # Every page ends with this line, so the script has run to its end once it shows; then wait
    # until no element is a loading skeleton, every chart is drawn and every image has loaded.
    page.get_by_text(RENDERED).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stSkeleton"]')
                 && [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
                      .every(c => c.querySelector('canvas, svg'))
                 && [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)""",
        timeout=timeout_ms,
    )


def load_page(browser_page: Any, url: str, title: str) -> float:
    """Open ``url`` and wait for it to render; returns the seconds it took."""
    started = time.monotonic()
    browser_page.goto(url, wait_until="domcontentloaded")
    wait_until_rendered(browser_page, title)
    return time.monotonic() - started


# url path -> the sidebar link of the page.
LINKS: dict[str, str] = {"": "At risk", "engagement": "Engagement", "data-quality": "Data quality", "model": "Model"}


def switch_page(browser_page: Any, path: str, title: str) -> float:
    """Go to a page through the sidebar, as a user does (no reload of the app); returns the seconds it took."""
    started = time.monotonic()
    browser_page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=LINKS[path], exact=True).click()
    browser_page.wait_for_url(lambda url: url.rstrip("/").endswith(f"/{path}".rstrip("/")) or not path)
    wait_until_rendered(browser_page, title)
    return time.monotonic() - started
