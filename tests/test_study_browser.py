"""The raters' page in a real browser (headless Chromium, Debian's package, as the MLflow UI test drives it).

Loads the page of one rater, checks both videos play, votes by click and by key, kills the server (SIGKILL) in the
middle of the study, votes while it is down (refused by the network, the page says so), restarts it, votes again,
reloads: no vote is lost or counted twice and the rater resumes at the next pair. Every response the page got
(the HTML, each JSON answer with its headers, each video with its headers and bytes) and the DOM are checked for
words that would name a method. The screenshot is kept in the test's temp dir (and copied to
`$SARA_SCREENSHOT_DIR`, e.g. docs/img when refreshing the documentation).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from evaluation.study.build import build_study, read_sources
from evaluation.study.design import StudyLayout
from flows.browser import chromium, missing_reason
from flows.net import free_port, wait_http
from study_testlib import BASELINES, MAIN, METHOD_WORDS, study_params, write_samples

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_reason() is not None, reason=f"no headless browser: {missing_reason()}"),
]
REPO = Path(__file__).resolve().parents[1]
# Installed before the page's own script: keeps every answer the page's fetch() gets (status, headers, body).
RECORD_FETCH = """
window.__answers = [];
const realFetch = window.fetch.bind(window);
window.fetch = async (...args) => {
  const r = await realFetch(...args);
  const copy = r.clone();
  const headers = Array.from(copy.headers.entries()).map(([k, v]) => k + ": " + v).join("\\n");
  copy.text().then(body => window.__answers.push({url: copy.url, status: copy.status, headers, body}));
  return r;
};
"""


def _serve(params: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sara.cli", "study", "serve", "--params", str(params), "--port",
                             str(port)], cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
    return proc


def _wait(driver, script: str, timeout: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def _ready_to_vote(driver, pair_number: int) -> None:
    _wait(driver, f"return document.getElementById('progress').textContent.startsWith('Pair {pair_number} of') && "
                  "!document.getElementById('vote-left').disabled")


def _playing(driver) -> dict:
    return driver.execute_script(
        "const v = ['left', 'right'].map(id => document.getElementById(id));"
        "return {ready: v.every(x => x.readyState >= 2), running: v.every(x => !x.paused && x.currentTime > 0),"
        "        loop: v.every(x => x.loop && x.muted), width: v.map(x => x.videoWidth),"
        "        drift: Math.abs(v[0].currentTime - v[1].currentTime)};")


def _received(driver) -> tuple[list[dict], list[str]]:
    """(the fetch() answers, the address of every resource) the page got since it was loaded."""
    return (driver.execute_script("return window.__answers"),
            driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"))


def _votes(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT position, pair, choice FROM votes ORDER BY position").fetchall()


def test_a_rater_votes_by_click_and_key_across_a_server_restart_and_sees_no_method(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    write_samples(tmp_path / "samples")
    params = study_params(tmp_path)
    build = Path(StudyLayout(str(tmp_path / "study")).build)
    study = build_study(read_sources(tmp_path / "samples", MAIN, BASELINES), raters=2, attention_checks=2, seed=0,
                        out=build, log=lambda _: None)
    rater = next(iter(study.plans))
    plan = study.plans[rater]
    db = tmp_path / "votes" / "votes.sqlite"
    port, log = free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}/r/{rater}"
    server = _serve(params, port, log)
    shot = tmp_path / "study_page.png"
    try:
        with chromium(1280, 1000) as driver:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_FETCH})
            driver.get(url)
            _ready_to_vote(driver, 1)
            state = _playing(driver)
            assert state["ready"] and state["running"] and state["loop"] and state["width"] == [32, 32], state
            driver.save_screenshot(str(shot))
            driver.find_element(By.ID, "vote-left").click()  # by click
            _ready_to_vote(driver, 2)
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)  # by key
            _ready_to_vote(driver, 3)
            driver.find_element(By.TAG_NAME, "body").send_keys("t")  # tie by key
            _ready_to_vote(driver, 4)
            assert [v[2] for v in _votes(db)] == ["left", "right", "tie"]

            server.send_signal(signal.SIGKILL)  # mid-study, no shutdown of any kind
            server.wait(timeout=30)
            driver.find_element(By.ID, "vote-right").click()  # the server is gone: nothing may be counted
            _wait(driver, "return document.getElementById('message').textContent.includes('cannot be reached')")
            assert len(_votes(db)) == 3

            server = _serve(params, port, log)
            _wait(driver, "return !document.getElementById('vote-right').disabled")
            driver.find_element(By.ID, "vote-right").click()  # the same vote again, now received
            _ready_to_vote(driver, 5)
            answers, resources = _received(driver)  # a reload starts a new record
            driver.refresh()  # a rater coming back resumes where they stopped
            _ready_to_vote(driver, 5)
            driver.find_element(By.TAG_NAME, "body").send_keys("1")
            _ready_to_vote(driver, 6)

            dom = driver.page_source + driver.execute_script("return document.body.innerText")
            more = _received(driver)
            answers, resources = answers + more[0], resources + more[1]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    votes = _votes(db)
    assert [(p, c) for p, _, c in votes] == [(0, "left"), (1, "right"), (2, "tie"), (3, "right"), (4, "left")]
    assert [pair for _, pair, _ in votes] == [s.pair for s in plan[:5]]  # in the rater's order, none twice

    # Nothing the rater's browser received names a method: the DOM, every JSON answer with its headers, the page,
    # every video with its headers and bytes (fetched again here from the restarted server's files).
    assert not METHOD_WORDS.findall(dom), METHOD_WORDS.findall(dom)
    assert len(answers) == 7 and {a["status"] for a in answers} == {200}  # 2 x next, 5 votes
    for a in answers:
        assert not METHOD_WORDS.findall(a["headers"] + a["body"]), a
    videos = [r for r in resources if "/v/" in r]
    assert len(videos) >= 10, resources
    server = _serve(params, port, log)
    try:
        for target in [url, *videos]:
            with urllib.request.urlopen(target) as resp:
                body, headers = resp.read(), "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            assert not METHOD_WORDS.findall(headers), (target, headers)
            assert not METHOD_WORDS.findall(body.decode("latin-1")), target
            assert b"x264" not in body and b"Lavf" not in body
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert json.loads((build / "study.json").read_text())["plans"][rater][0]["pair"] == votes[0][1]
    keep = os.environ.get("SARA_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / shot.name).write_bytes(shot.read_bytes())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
