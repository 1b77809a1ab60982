"""`sara study serve`: the raters' web page on a local port (FastAPI on uvicorn, both already in the dependency tree).

    sara study serve [--params params.yaml] [--host 127.0.0.1] [--port 8765] [--db study.db]

Reads the build (`<study.out_dir>/build`), opens (or creates) the votes database `study.db` and prints one link
per rater id. Bound to 127.0.0.1 unless `--host` says otherwise (a study over a network belongs behind a proxy
the organiser runs). Routes, all answering with `Cache-Control: no-store` and no `Server` header:
  GET  /r/<rater>              the rater's page (page.py)
  GET  /api/r/<rater>/next     {"pair", "caption", "left", "right", "done", "total"}; pair null when finished
  POST /api/r/<rater>/vote     {"pair": <id>, "choice": "left" | "tie" | "right"} -> the next pair, after the
                               vote is committed; 404 unknown rater or pair, 409 a repeated vote or a pair not
                               yet shown, 422 a malformed body: each writes nothing
  GET  /v/<token>              a video; the token names one side of one pair for one rater and nothing else
  GET  /health                 "ok"
Video responses carry their length only: no modification time and no time-derived ETag (the build's write order
would tell which videos belong together). There is no listing, no API schema and no static folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ConfigDict

from sara.config import StrictModel

from evaluation.study.design import MEDIA_DIR, Study, StudyLayout, load_study
from evaluation.study.page import landing_page, rater_page
from evaluation.study.session import CHOICES, Session, Shown, VoteRefused
from evaluation.study.store import VoteStore

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


class VoteBody(StrictModel):
    """The body of a vote; anything else (another key, a number for an id) is a 422 (StrictModel forbids extra keys;
    strict refuses a number for a string)."""

    model_config = ConfigDict(strict=True)
    pair: str
    choice: str  # left | tie | right (checked by the session, which answers 422 too)


def media_tokens(study: Study) -> dict[str, str]:
    """token -> media id, for every side of every pair of every rater's plan."""
    tokens = {}
    for rater, plan in study.plans.items():
        for slot in plan:
            pair = study.pair(slot.pair)
            for side, video in (("a", pair.a), ("b", pair.b)):
                tokens[study.token("show", rater, pair.id, side)] = video.media
    return tokens


def create_app(study: Study, store: VoteStore, media_dir: Path):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException
    from starlette.responses import FileResponse

    class BareFileResponse(FileResponse):
        def set_stat_headers(self, stat_result: os.stat_result) -> None:  # the length, never a time
            self.headers.setdefault("content-length", str(stat_result.st_size))

    session = Session(study, store)
    tokens = media_tokens(study)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def payload(rater: str, shown: Shown | None) -> dict:
        if shown is None:
            return {"pair": None, "done": len(study.plans[rater]), "total": len(study.plans[rater])}
        pair = study.pair(shown.pair)
        sides = {pair.a.media: "a", pair.b.media: "b"}
        url = lambda media: f"/v/{study.token('show', rater, pair.id, sides[media])}"  # noqa: E731
        return {"pair": shown.pair, "caption": shown.caption, "left": url(shown.left), "right": url(shown.right),
                "done": shown.done, "total": shown.total}

    @app.middleware("http")
    async def no_cache(request: Request, call_next):
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": f"malformed vote: expected {{\"pair\": id, \"choice\": {'|'.join(CHOICES)}}}"},
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    def refuse(err: VoteRefused):
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.get("/", response_class=HTMLResponse)
    def landing() -> str:
        return landing_page()

    @app.get("/health", response_class=PlainTextResponse)
    def health() -> str:
        return "ok"

    @app.get("/r/{rater}", response_class=HTMLResponse)
    def page(rater: str):
        if not session.knows(rater):
            return HTMLResponse(landing_page(), status_code=404)
        return rater_page(rater)

    @app.get("/api/r/{rater}/next")
    def next_pair(rater: str):
        try:
            return payload(rater, session.current(rater))
        except VoteRefused as err:
            return refuse(err)

    @app.post("/api/r/{rater}/vote")
    def vote(rater: str, body: VoteBody):
        try:
            session.vote(rater, body.pair, body.choice)  # committed before the next pair is computed
            return payload(rater, session.current(rater))
        except VoteRefused as err:
            return refuse(err)

    @app.get("/v/{token}")
    def video(token: str):
        media = tokens.get(token)
        if media is None:
            return JSONResponse({"error": "unknown video"}, status_code=404)
        return BareFileResponse(media_dir / f"{media}.mp4", media_type="video/mp4")

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from sara.config import ParamsError, load_params
    from sara.errors import InputError

    ap = argparse.ArgumentParser(prog="sara study serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: loopback only)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--db", default=None, help="votes database (default: study.db of the params)")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.params)
        build = Path(StudyLayout(params.study.out_dir).build)
        study = load_study(build)
        store = VoteStore(args.db or params.study.db, study.fingerprint)
    except (ParamsError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    base = f"http://{args.host}:{args.port}"
    print(f"[study] {len(study.plans)} raters; votes -> {store.path}", flush=True)
    for rater in study.plans:
        print(f"  {base}/r/{rater}", flush=True)
    try:
        uvicorn.run(create_app(study, store, build / MEDIA_DIR), host=args.host, port=args.port,
                    log_level="warning", access_log=False, server_header=False)
    finally:
        store.close()
    return 0
