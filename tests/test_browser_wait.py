"""flows.browser waits for what loads after the page's text (a chart) before it saves a screenshot.

The MLflow compare view prints its params and metrics before Plotly draws the parallel-coordinates plot; the
README's compare screenshot was once saved with the plot's grey loading placeholder. A stand-in driver (no
browser) draws the plot on its fourth look; the screenshot must be taken after that."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("selenium")

from flows import browser  # noqa: E402


class _Element:
    def is_displayed(self) -> bool:
        return True


class _Page:
    """Text at once; the element matching `.plot` from the fourth query on."""

    def __init__(self) -> None:
        self.queries = 0
        self.saved_after: int | None = None

    def get(self, url: str) -> None:
        pass

    def execute_script(self, script: str):
        if "innerText" in script:
            return "Comparing 3 Runs"
        return ["complete", 100, 1]  # settle(): a finished, unchanging page

    def find_elements(self, by: str, selector: str) -> list[_Element]:
        if selector == ".plot":
            self.queries += 1
            return [_Element()] if self.queries >= 4 else []
        return []

    def save_screenshot(self, path: str) -> None:
        self.saved_after = self.queries
        Path(path).write_bytes(b"png")


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> _Page:
    """The stand-in page, served by a stand-in `flows.browser.chromium`."""
    page = _Page()

    @contextmanager
    def fake_chromium(width: int, height: int):
        yield page

    monkeypatch.setattr(browser, "chromium", fake_chromium)
    return page


def test_the_screenshot_waits_until_the_ready_selector_is_drawn(tmp_path: Path, page: _Page):
    browser.screenshot("http://ui", tmp_path / "shot.png", ["Comparing 3 Runs"], timeout=10, ready=[".plot"])
    assert page.saved_after is not None and page.saved_after >= 4


def test_a_chart_that_never_draws_is_named(tmp_path: Path, page: _Page):
    with pytest.raises(AssertionError, match=r"not drawn after 1 s: \['\.never'\]"):
        browser.screenshot("http://ui", tmp_path / "shot.png", timeout=1, ready=[".never"])
    assert page.saved_after is None
