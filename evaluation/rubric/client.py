"""A small OpenAI-compatible chat-completions client (vLLM, SGLang, any `/v1/chat/completions` server).

Uses httpx directly: the judges need only one endpoint, plus the vLLM extras (`top_k`, `min_p`,
`chat_template_kwargs.enable_thinking`) that the official client would pass through `extra_body` anyway.
Transport failures, 429 and 5xx are retried with exponential backoff; 4xx other than 429 fail at once because
repeating a malformed request cannot help.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ChatError(RuntimeError):
    """The server could not give a reply after all retries (or refused the request)."""


@dataclass(frozen=True)
class ChatReply:
    content: str  # the assistant message text (may still hold <think> blocks)
    reasoning: str  # separated reasoning text when the server has a reasoning parser, else ""
    raw: dict[str, Any]  # the full response body, kept for the record


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        retries: int = 3,
        backoff_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url:
            raise ValueError("judge base_url is not set: it must name an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    @classmethod
    def from_judge(cls, judge: Any, *, retries: int, backoff_s: float) -> "ChatClient":
        """Build from a JudgeParams; the API key (if any) is read from the environment variable it names."""
        key = os.environ.get(judge.api_key_env) if judge.api_key_env else None
        return cls(judge.base_url, judge.model, api_key=key, timeout_s=judge.timeout_s, retries=retries, backoff_s=backoff_s)

    def close(self) -> None:
        self._http.close()

    def chat(self, messages: list[dict[str, Any]], **sampling: Any) -> ChatReply:
        """POST one chat completion. `sampling` goes into the body as given (None values are dropped)."""
        body = {"model": self.model, "messages": messages, **{k: v for k, v in sampling.items() if v is not None}}
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._http.post(self.url, json=body)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                continue
            if resp.status_code >= 400:
                raise ChatError(f"{self.url} refused the request: HTTP {resp.status_code}: {resp.text[:500]}")
            try:
                data = resp.json()
                msg = data["choices"][0]["message"]
            except (ValueError, KeyError, IndexError, TypeError):
                last = f"malformed response body: {resp.text[:300]}"
                continue
            reasoning = msg.get("reasoning_content") or msg.get("reasoning") or ""
            return ChatReply(content=msg.get("content") or "", reasoning=reasoning, raw=data)
        raise ChatError(f"{self.url}: no reply after {self.retries + 1} attempts; last error: {last}")
