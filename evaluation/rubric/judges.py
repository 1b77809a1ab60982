"""VLM judge backends and the per-video scoring call (one call per rubric group, strict JSON replies).

Two backends share one interface `Judge.reply(group, description, frames, video_path) -> (content, reasoning)`:
- `OpenAIJudge`: an OpenAI-compatible chat server (vLLM serving Qwen3.5-27B, Qwen3.6-35B-A3B, Gemma-4-31B-it).
  Frames go as JPEG images, or the mp4 as one `video_url` part; thinking is switched per judge through
  `chat_template_kwargs.enable_thinking` (Qwen3.x templates read it; others ignore it).
- `TransformersJudge`: a local image-text-to-text model directory loaded with transformers.

`score_group` retries a reply that is not complete JSON (`rubric.retries` times), keeps every raw reply, and
returns the most complete parse: a dimension that never got a valid score is reported invalid, never guessed.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evaluation.rubric.dimensions import GROUPS
from evaluation.rubric.parse import ParsedReply, ReplyError, parse_reply
from evaluation.rubric.prompts import SYSTEM_PROMPT, Description, build_messages, user_text


def sample_frame_indices(n_frames: int, max_frames: int) -> list[int]:
    """Uniformly spaced frame indices, first and last included, at most `max_frames` of them."""
    if n_frames <= max_frames:
        return list(range(n_frames))
    return [int(round(x)) for x in np.linspace(0, n_frames - 1, max_frames)]


def jpeg_data_url(frame: np.ndarray, quality: int = 90) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def media_parts(frames: np.ndarray, video_path: str | Path | None, media: str, max_frames: int) -> list[dict]:
    """OpenAI content parts for the video: JPEG frames (uniformly sampled) or the mp4 itself."""
    if media == "video":
        if video_path is None or not Path(video_path).is_file():
            raise FileNotFoundError(f"judge media is 'video' but the mp4 {video_path!s} does not exist")
        data = base64.b64encode(Path(video_path).read_bytes()).decode()
        return [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + data}}]
    idx = sample_frame_indices(len(frames), max_frames)
    return [{"type": "image_url", "image_url": {"url": jpeg_data_url(frames[i])}} for i in idx]


class Judge(Protocol):
    name: str

    def reply(self, group: str, d: Description, frames: np.ndarray, video_path: str | Path | None) -> tuple[str, str]:
        """One completion for one rubric group: (content, reasoning)."""
        ...


class OpenAIJudge:
    def __init__(self, params: Any, *, retries: int = 3, backoff_s: float = 2.0, sleep=None) -> None:
        from evaluation.rubric.client import ChatClient

        if not params.model:
            raise ValueError(f"rubric.judges[{params.name}].model is not set: it must be the served model name")
        self.p = params
        self.name = params.name
        self.client = ChatClient.from_judge(params, retries=retries, backoff_s=backoff_s)
        if sleep is not None:
            self.client.sleep = sleep

    def sampling(self) -> dict[str, Any]:
        p = self.p
        return {
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k,
            "min_p": p.min_p,
            "presence_penalty": p.presence_penalty,
            "max_tokens": p.max_tokens,
            "chat_template_kwargs": {"enable_thinking": bool(p.thinking)},
        }

    def reply(self, group: str, d: Description, frames: np.ndarray, video_path: str | Path | None) -> tuple[str, str]:
        messages = build_messages(group, d, media_parts(frames, video_path, self.p.media, self.p.max_frames))
        r = self.client.chat(messages, **self.sampling())
        return r.content, r.reasoning


class TransformersJudge:
    """A local VLM directory (e.g. a Qwen3-VL or Gemma checkpoint in transformers format), frames as images."""

    def __init__(self, params: Any, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from sara.weights import require_dir

        path = require_dir(f"rubric.judges[{params.name}].model", params.model, "a transformers image-text-to-text model (config.json, weights, processor files)")
        self.p = params
        self.name = params.name
        self.device = device
        self.processor = AutoProcessor.from_pretrained(path)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device).eval()

    def reply(self, group: str, d: Description, frames: np.ndarray, video_path: str | Path | None) -> tuple[str, str]:
        import torch
        from PIL import Image

        idx = sample_frame_indices(len(frames), self.p.max_frames)
        images = [{"type": "image", "image": Image.fromarray(frames[i])} for i in idx]
        messages = [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
            {"role": "user", "content": [*images, {"type": "text", "text": user_text(group, d)}]},
        ]
        inputs = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            enable_thinking=bool(self.p.thinking),
        ).to(self.device)
        do_sample = self.p.temperature > 0
        gen_kwargs: dict[str, Any] = {"max_new_tokens": self.p.max_tokens, "do_sample": do_sample}
        if do_sample:
            gen_kwargs.update(temperature=self.p.temperature, top_p=self.p.top_p)
            if self.p.top_k is not None:
                gen_kwargs["top_k"] = self.p.top_k
        with torch.no_grad():
            out = self.model.generate(**inputs, **gen_kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]  # (1, L_new): drop the prompt
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0], ""


def make_judge(params: Any, *, retries: int, backoff_s: float, device: str = "cpu") -> Judge:
    if params.backend == "openai":
        return OpenAIJudge(params, retries=retries, backoff_s=backoff_s)
    if params.backend == "transformers":
        return TransformersJudge(params, device=device)
    raise ValueError(f"rubric.judges[{params.name}].backend: unknown backend {params.backend!r}")


@dataclass
class GroupResult:
    """One judge's verdict on one rubric group of one video, with every raw reply kept."""

    judge: str
    group: str
    scores: dict[str, dict] = field(default_factory=dict)  # valid dims: {dim: {"score", "reason"}}
    invalid: dict[str, str] = field(default_factory=dict)  # dim -> why no valid score was obtained
    attempts: list[dict] = field(default_factory=list)  # [{"content", "reasoning", "error"}]

    def to_dict(self) -> dict:
        return asdict(self)


def score_group(judge: Judge, group: str, d: Description, frames: np.ndarray, video_path: str | Path | None, retries: int) -> GroupResult:
    """Ask one judge for one group; retry incomplete or unparseable replies; keep the most complete parse."""
    from evaluation.rubric.client import ChatError

    dims = GROUPS[group]
    result = GroupResult(judge=judge.name, group=group)
    best: ParsedReply | None = None
    for _ in range(retries + 1):
        try:
            content, reasoning = judge.reply(group, d, frames, video_path)
        except ChatError as err:
            result.attempts.append({"content": "", "reasoning": "", "error": str(err)})
            break  # the transport already retried with backoff: the server is gone
        try:
            parsed = parse_reply(content, dims)
            error = "; ".join(f"{k}: {v}" for k, v in parsed.problems.items())
        except ReplyError as err:
            parsed, error = None, str(err)
        result.attempts.append({"content": content, "reasoning": reasoning, "error": error})
        if parsed is not None and (best is None or len(parsed.scores) > len(best.scores)):
            best = parsed
        if best is not None and best.complete:
            break
    if best is not None:
        result.scores = best.scores
        result.invalid = dict(best.problems)
    else:
        result.invalid = {dim: result.attempts[-1]["error"] or "no reply" for dim in dims}
    return result
