"""Look at a local web UI the way a person does: headless Chromium (Debian's package) driven by Selenium.

No browser or driver is ever downloaded: `chromium` and `chromedriver` come from the system (`apt-get install
chromium chromium-driver`), each started with a fresh profile and no background networking. Used by the MLflow
UI test and to refresh the screenshots in docs/img/.

    python -m flows.browser URL OUT.png [--expect TEXT ...] [--ready CSS ...] [--dismiss CSS ...]
        [--width 1600 --height 1000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # runs as root in containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
)


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths from the system, or None when either is missing."""
    browser = next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def missing_reason() -> str | None:
    """Why a browser check cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if find_chromium() is None:
        return "Debian's chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1600, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium WebDriver with a throw-away profile; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError(missing_reason())
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="sara-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    # An explicit driver path: Selenium then never tries to fetch a driver.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_texts(driver: Any, texts: Sequence[str], timeout: float) -> str:
    """Poll the page's visible text until every one of `texts` is on screen; return the text.

    Raises AssertionError naming the texts still missing after `timeout` seconds.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    missing: list[str] = list(texts)
    seen = ""

    def all_visible(d: Any) -> bool:
        nonlocal missing, seen
        seen = d.execute_script("return document.body ? document.body.innerText : ''") or ""
        missing = [t for t in texts if t not in seen]
        return not missing

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.25).until(all_visible)
    except Exception as err:  # selenium's TimeoutException: report what was missing instead
        raise AssertionError(f"not on screen after {timeout:.0f} s: {missing}\n--- page text ---\n{seen[:3000]}") from err
    return seen


def click_if_present(driver: Any, selectors: Sequence[str]) -> int:
    """Click every element matching the CSS selectors (e.g. a side panel's close button); return how many."""
    from selenium.webdriver.common.by import By

    clicked = 0
    for selector in selectors:
        for element in driver.find_elements(By.CSS_SELECTOR, selector):
            if element.is_displayed():
                element.click()
                clicked += 1
    return clicked


def wait_for_elements(driver: Any, selectors: Sequence[str], timeout: float) -> None:
    """Poll until every CSS selector matches a displayed element (a chart drawn, not its loading placeholder).

    Raises AssertionError naming the selectors still unmatched after `timeout` seconds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    missing: list[str] = list(selectors)

    def all_drawn(d: Any) -> bool:
        nonlocal missing
        missing = [s for s in selectors if not any(e.is_displayed() for e in d.find_elements(By.CSS_SELECTOR, s))]
        return not missing

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.25).until(all_drawn)
    except Exception as err:  # selenium's TimeoutException: report what was missing instead
        raise AssertionError(f"not drawn after {timeout:.0f} s: {missing}") from err


def screenshot(
    url: str,
    out: Path,
    expect: Sequence[str] = (),
    timeout: float = 60.0,
    width: int = 1600,
    height: int = 1000,
    dismiss: Sequence[str] = (),
    ready: Sequence[str] = (),
) -> str:
    """Open `url`, wait until `expect` texts are visible and the `ready` CSS selectors match drawn elements (a
    chart that loads after the page's text), close `dismiss` panels, save a PNG; return the page text."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with chromium(width, height) as driver:
        driver.get(url)
        text = wait_for_texts(driver, expect, timeout)
        wait_for_elements(driver, ready, timeout)
        click_if_present(driver, dismiss)
        settle(driver)
        driver.save_screenshot(str(out))
    return text


def settle(driver: Any, timeout: float = 10.0) -> None:
    """Wait until no network request is in flight and the page stopped changing size (charts finished drawing)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "return [document.readyState, document.body.scrollHeight, "
            "performance.getEntriesByType('resource').length]"
        )
        if state == last and state[0] == "complete":
            return
        last = state
        time.sleep(0.25)  # polling interval: compare two snapshots of the page state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.browser", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--expect", nargs="*", default=[])
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--dismiss", nargs="*", default=[], help="CSS selectors of elements to click before the shot")
    parser.add_argument("--ready", nargs="*", default=[], help="CSS selectors that must match drawn elements first")
    args = parser.parse_args(argv)
    screenshot(args.url, args.out, args.expect, args.timeout, args.width, args.height, args.dismiss, args.ready)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
