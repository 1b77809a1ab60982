"""The rater's page: one self-contained HTML document (no script or font from the network).

The caption and the question on top, the two videos side by side, muted, looping and kept in step (the right one
follows the left one's clock), "Left is better / Same / Right is better" buttons with keys (left arrow or 1, down
arrow or 2 or T, right arrow or 3), and the progress. The buttons wake up once both videos have played through
once; while a vote is on its way they sleep, so a double click or a held key sends one vote. The next pair comes
in the answer to the vote, i.e. only after the server committed it. Nothing here names a method: the page knows
an opaque pair id, two opaque video addresses and the caption.
"""

from __future__ import annotations

import html

from evaluation.study.design import QUESTION

TITLE = "Which video fits the description?"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>__TITLE__</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem auto; padding: 0 1.5rem; max-width: 1200px; color: #222; }
  #caption { font-size: 1.25rem; margin: .5rem 0 1rem; }
  #question { color: #555; }
  #videos { display: flex; gap: 2rem; justify-content: center; }
  figure { margin: 0; text-align: center; }
  video { width: min(38vw, 480px); image-rendering: pixelated; background: #000; }
  #buttons { display: flex; gap: 1rem; justify-content: center; margin: 1.2rem 0; }
  button { font-size: 1.1rem; padding: .6rem 1.4rem; cursor: pointer; }
  button:disabled { cursor: default; opacity: .45; }
  #progress { text-align: center; color: #555; }
  #message { text-align: center; color: #a00; min-height: 1.3rem; }
  kbd { border: 1px solid #bbb; border-radius: 3px; padding: 0 .3rem; font-size: .85rem; }
</style>
</head>
<body data-rater="__RATER__">
<main id="study">
  <p id="question">__QUESTION__</p>
  <p id="caption"></p>
  <div id="videos">
    <figure><video id="left" muted loop playsinline preload="auto"></video><figcaption>Left</figcaption></figure>
    <figure><video id="right" muted loop playsinline preload="auto"></video><figcaption>Right</figcaption></figure>
  </div>
  <div id="buttons">
    <button id="vote-left" data-choice="left" disabled>Left is better <kbd>&larr;</kbd></button>
    <button id="vote-tie" data-choice="tie" disabled>About the same <kbd>&darr;</kbd></button>
    <button id="vote-right" data-choice="right" disabled>Right is better <kbd>&rarr;</kbd></button>
  </div>
  <p id="progress"></p>
  <p id="message"></p>
</main>
<p id="finished" hidden>All pairs are rated. Thank you! You can close this page.</p>
<script>
"use strict";
const rater = document.body.dataset.rater;
const api = "/api/r/" + encodeURIComponent(rater);
const left = document.getElementById("left"), right = document.getElementById("right");
const buttons = Array.from(document.querySelectorAll("#buttons button"));
const KEYS = {ArrowLeft: "left", "1": "left", ArrowDown: "tie", "2": "tie", t: "tie", T: "tie",
              ArrowRight: "right", "3": "right"};
let pair = null, busy = true, wake = null;

function setBusy(b) { busy = b; buttons.forEach(x => { x.disabled = b; }); }
function say(text) { document.getElementById("message").textContent = text || ""; }

function show(next) {
  clearTimeout(wake);
  setBusy(true);
  if (!next.pair) {
    pair = null;
    left.removeAttribute("src"); right.removeAttribute("src");
    document.getElementById("study").hidden = true;
    document.getElementById("finished").hidden = false;
    return;
  }
  pair = next.pair;
  document.getElementById("caption").textContent = next.caption;
  document.getElementById("progress").textContent = "Pair " + (next.done + 1) + " of " + next.total;
  let ready = 0;
  const start = () => {
    if (++ready < 2) return;
    left.currentTime = 0; right.currentTime = 0;
    Promise.all([left.play(), right.play()]).catch(() => say("Press play if the videos do not start."));
    // one full loop before a vote counts as watched
    wake = setTimeout(() => { if (pair === next.pair) setBusy(false); }, Math.max(left.duration, right.duration) * 1000);
  };
  for (const v of [left, right]) {
    v.oncanplaythrough = () => { v.oncanplaythrough = null; start(); };
    v.onerror = () => say("A video could not be loaded; reload the page.");
  }
  left.src = next.left; right.src = next.right;
}

function follow() {  // keep the right video on the left one's clock
  if (!left.paused && Math.abs(left.currentTime - right.currentTime) > 0.05) right.currentTime = left.currentTime;
  requestAnimationFrame(follow);
}

async function load() {
  const r = await fetch(api + "/next", {cache: "no-store"});
  if (!r.ok) { say("This link is not valid."); return; }
  show(await r.json());
}

async function vote(choice) {
  if (busy || !pair) return;
  setBusy(true);
  say("");
  try {
    const r = await fetch(api + "/vote", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({pair: pair, choice: choice})});
    if (r.ok) { show(await r.json()); return; }
    if (r.status === 409) { await load(); return; }  // already counted (e.g. from another tab): resync
    say("The vote was not accepted (" + r.status + "); please try again.");
  } catch (e) {
    say("The server cannot be reached; your earlier votes are saved. Try again in a moment.");
  }
  setBusy(false);
}

buttons.forEach(b => b.addEventListener("click", () => vote(b.dataset.choice)));
document.addEventListener("keydown", e => {
  const choice = KEYS[e.key];
  if (choice && !e.repeat) { e.preventDefault(); vote(choice); }
});
requestAnimationFrame(follow);
load();
</script>
</body>
</html>
"""


def rater_page(rater: str) -> str:
    return (_PAGE.replace("__TITLE__", html.escape(TITLE)).replace("__QUESTION__", html.escape(QUESTION))
            .replace("__RATER__", html.escape(rater, quote=True)))


def landing_page() -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(TITLE)}</title></head>"
            "<body><p>Open the link you were given to start rating.</p></body></html>")
