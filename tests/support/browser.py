"""Open an HTML report in a real headless Chromium (Debian's chromium + chromium-driver, via selenium).

`render(index_html, screenshot)` loads the page from disk, saves a screenshot and returns what the page
itself reports through JavaScript: which <img> failed to decode, which <video>/<audio> has no usable
source. `require_browser()` skips the calling test, with the reason, where Chromium, its driver or
selenium is absent (they are installed by .ci/run, which then sets AVBENCH_REQUIRE_BROWSER=1 so that
they must run; nothing is downloaded at run time).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
_BINARIES = ("chromium", "chromium-browser")
_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
          "--window-size=1280,2000", "--autoplay-policy=no-user-gesture-required")

# Runs in the page after load: the facts the tests assert on. A media element counts as readable when
# the browser has read its metadata (readyState >= 1); NETWORK_NO_SOURCE (3) means no source could be used.
_FACTS_JS = """
const done = arguments[arguments.length - 1];
const media = Array.from(document.querySelectorAll('video, audio'));
const deadline = Date.now() + 10000;
function facts() {
  const imgs = Array.from(document.images);
  return {
    title: document.title,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    media: media.map(m => ({
      tag: m.tagName.toLowerCase(),
      src: (m.currentSrc || (m.querySelector('source') || {}).src || ''),
      ready_state: m.readyState, network_state: m.networkState,
      error: m.error ? m.error.code : null,
    })),
  };
}
function poll() {
  const pending = media.filter(m => m.readyState < 1 && m.networkState !== 3 && !m.error);
  if (pending.length === 0 || Date.now() > deadline) { done(facts()); } else { setTimeout(poll, 100); }
}
media.forEach(m => { if (m.readyState < 1) { m.load(); } });
poll();
"""


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not any(shutil.which(b) for b in _BINARIES):
        return "chromium is not installed (apt-get install chromium chromium-driver; .ci/run does this)"
    if not Path(CHROMEDRIVER).exists():
        return f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)"
    return None


def require_browser() -> None:
    """Skip without a browser, except where .ci/run installed one (AVBENCH_REQUIRE_BROWSER=1): a CI
    machine whose browser tests all skipped would pass without having looked at a single page."""
    reason = browser_missing()
    if reason and os.environ.get("AVBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AVBENCH_REQUIRE_BROWSER=1 but {reason}")
    if reason:
        pytest.skip(reason)


def render(index_html: Path, screenshot: Path) -> dict:
    """Load `index_html` from disk in headless Chromium, save `screenshot` (PNG), return the page's facts.

    Besides the JS facts the result has `missing_media`: <video>/<audio> sources whose file is absent."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_browser()
    index_html = Path(index_html).resolve()
    profile = Path(tempfile.mkdtemp(prefix="avbench-chromium-"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = next(shutil.which(b) for b in _BINARIES if shutil.which(b))
    for flag in (*_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(20)
        driver.get(index_html.as_uri())
        t0 = time.monotonic()
        while driver.execute_script("return document.readyState") != "complete" and time.monotonic() - t0 < 20:
            time.sleep(0.1)
        facts = driver.execute_async_script(_FACTS_JS)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(800, min(int(height), 8000)))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(screenshot)):
            raise RuntimeError(f"chromium wrote no screenshot to {screenshot}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    facts["missing_media"] = [m["src"] for m in facts["media"] if not _file_of(m["src"]).is_file()]
    return facts


def _file_of(uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path("/nonexistent-" + uri.replace("/", "_"))


def assert_rendered(facts: dict, screenshot: Path) -> None:
    """The checks every report test makes: page loaded, no broken image, every media source readable."""
    assert screenshot.is_file() and screenshot.stat().st_size > 0, screenshot
    assert not facts["broken_images"], f"broken <img>: {facts['broken_images']}"
    assert not facts["missing_media"], f"<video>/<audio> sources without a file: {facts['missing_media']}"
    unreadable = [m for m in facts["media"] if m["error"] is not None or (m["ready_state"] < 1 and m["network_state"] == 3)]
    assert not unreadable, f"<video>/<audio> the browser could not read: {unreadable}"
