"""The OpenAI-compatible judge client against a scripted local server on 127.0.0.1 (good and bad replies)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from evaluation.rubric.client import ChatClient, ChatError
from evaluation.rubric.dimensions import MQ_DIMS, TA_DIMS
from evaluation.rubric.judges import OpenAIJudge, score_group
from evaluation.rubric.prompts import Description
from sara.config import JudgeParams


class ScriptedServer:
    """Serves `/v1/chat/completions`; each request consumes the next scripted (status, content) pair."""

    def __init__(self) -> None:
        self.script: list[tuple[int, object]] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                status, content = outer.script.pop(0) if outer.script else (500, "script exhausted")
                if status == 200 and isinstance(content, dict):  # a full message dict (content + reasoning)
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", **content}}]})
                elif status == 200 and content is None:  # a body that is not a chat completion
                    payload = json.dumps({"error": "nothing here"})
                elif status == 200:
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                else:
                    payload = str(content)
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = ScriptedServer()
    yield s
    s.close()


DESC = Description("A grey room. Style: flat.", "Expected counts: 0 person(s), 2 object(s).\nOBJECT_1: red disc.",
                   "shot_1: OBJECT_1 moves right.", num_persons=0, num_objects=2)
FRAMES = np.zeros((9, 32, 32, 3), dtype=np.uint8)


def good(dims, score=4):
    return json.dumps({d: {"score": score, "reason": f"{d} ok"} for d in dims})


def judge(server, **kw) -> OpenAIJudge:
    p = JudgeParams(name="q", base_url=server.base_url, model="qwen3.5-27b", max_frames=4, top_k=20, min_p=0.0,
                    presence_penalty=1.5, **kw)
    return OpenAIJudge(p, retries=2, backoff_s=0.0)


def test_good_reply_scores_every_dimension_and_sends_the_vllm_extras(server):
    server.script = [(200, good(TA_DIMS, 5))]
    r = score_group(judge(server, thinking=False), "TA", DESC, FRAMES, None, retries=2)
    assert {d: v["score"] for d, v in r.scores.items()} == {d: 5 for d in TA_DIMS}
    assert r.invalid == {} and len(r.attempts) == 1
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["model"] == "qwen3.5-27b"
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert (body["top_k"], body["min_p"], body["presence_penalty"], body["temperature"]) == (20, 0.0, 1.5, 1.0)
    user = body["messages"][1]["content"]
    assert [p["type"] for p in user] == ["image_url"] * 4 + ["text"]  # max_frames frames, then the rubric text
    assert user[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert all(d in user[-1]["text"] for d in TA_DIMS) and "[Shot Narrative]" in user[-1]["text"]


def test_think_wrapped_and_fenced_reply_is_repaired_and_raw_kept(server):
    content = "<think>The disc is red... {not json}</think>\nHere you go:\n```json\n" + good(MQ_DIMS, 3) + "\n```"
    server.script = [(200, content)]
    r = score_group(judge(server), "MQ", DESC, FRAMES, None, retries=2)
    assert {v["score"] for v in r.scores.values()} == {3} and set(r.scores) == set(MQ_DIMS)
    assert r.attempts[0]["content"] == content
    assert server.requests[0]["body"]["chat_template_kwargs"] == {"enable_thinking": True}


def test_separate_reasoning_field_is_kept(server):
    server.script = [(200, {"content": good(TA_DIMS), "reasoning_content": "counted two discs"})]
    r = score_group(judge(server), "TA", DESC, FRAMES, None, retries=0)
    assert r.attempts[0]["reasoning"] == "counted two discs" and len(r.scores) == 6


def test_garbage_then_good_reply_is_retried(server):
    server.script = [(200, "I cannot evaluate this video."), (200, good(TA_DIMS, 2))]
    r = score_group(judge(server), "TA", DESC, FRAMES, None, retries=2)
    assert len(r.attempts) == 2 and "no JSON object" in r.attempts[0]["error"]
    assert {v["score"] for v in r.scores.values()} == {2}


def test_incomplete_reply_is_retried_and_the_complete_one_wins(server):
    partial = json.loads(good(TA_DIMS, 4))
    del partial["scene_style"]
    partial["entity_count"]["score"] = 7  # out of range
    server.script = [(200, json.dumps(partial)), (200, good(TA_DIMS, 1))]
    r = score_group(judge(server), "TA", DESC, FRAMES, None, retries=2)
    assert "scene_style: missing" in r.attempts[0]["error"] and "entity_count: score 7" in r.attempts[0]["error"]
    assert len(r.scores) == 6 and r.invalid == {}


def test_always_bad_replies_leave_dimensions_invalid_not_guessed(server):
    partial = {"entity_count": {"score": 3, "reason": "x"}, "scene_style": {"score": "five", "reason": "y"}}
    server.script = [(200, "no"), (200, json.dumps(partial)), (200, "```json\n{broken```")]
    r = score_group(judge(server), "TA", DESC, FRAMES, None, retries=2)
    assert len(r.attempts) == 3 and [a["content"] for a in r.attempts][0] == "no"
    assert r.scores == {"entity_count": {"score": 3, "reason": "x"}}  # the most complete parse is kept
    assert set(r.invalid) == set(TA_DIMS) - {"entity_count"}
    assert "'five'" in r.invalid["scene_style"]


def test_server_errors_are_retried_with_backoff(server):
    server.script = [(503, "busy"), (500, "oops"), (200, good(TA_DIMS))]
    delays: list[float] = []
    c = ChatClient(server.base_url, "m", retries=3, backoff_s=0.5, sleep=delays.append)
    reply = c.chat([{"role": "user", "content": "hi"}])
    assert json.loads(reply.content)["entity_count"]["score"] == 4
    assert delays == [0.5, 1.0] and len(server.requests) == 3


def test_malformed_body_is_retried_then_gives_up(server):
    server.script = [(200, None), (200, None)]
    c = ChatClient(server.base_url, "m", retries=1, backoff_s=0.0)
    with pytest.raises(ChatError, match="no reply after 2 attempts; last error: malformed response body"):
        c.chat([{"role": "user", "content": "hi"}])


def test_client_error_is_not_retried(server):
    server.script = [(400, "bad request: unknown field")]
    c = ChatClient(server.base_url, "m", retries=3, backoff_s=0.0, api_key="k")
    with pytest.raises(ChatError, match="HTTP 400: bad request"):
        c.chat([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1 and server.requests[0]["auth"] == "Bearer k"


def test_unreachable_server_is_recorded_as_invalid(server):
    url = server.base_url
    server.close()
    j = OpenAIJudge(JudgeParams(name="gone", base_url=url, model="m", timeout_s=2.0), retries=1, backoff_s=0.0)
    r = score_group(j, "MQ", DESC, FRAMES, None, retries=3)
    assert len(r.attempts) == 1 and "no reply after 2 attempts" in r.attempts[0]["error"]
    assert set(r.invalid) == set(MQ_DIMS) and r.scores == {}
    server.httpd = type("Dummy", (), {"shutdown": lambda self: None, "server_close": lambda self: None})()


def test_video_media_sends_the_mp4_as_one_part(server, tmp_path):
    mp4 = tmp_path / "v.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    server.script = [(200, good(TA_DIMS))]
    score_group(judge(server, media="video"), "TA", DESC, FRAMES, mp4, retries=0)
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert [p["type"] for p in user] == ["video_url", "text"]
    assert user[0]["video_url"]["url"].startswith("data:video/mp4;base64,AAAAGGZ0eXBtcDQy")
