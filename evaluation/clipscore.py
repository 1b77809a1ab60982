"""CLIP text-video score of sampled videos, with an open_clip model loaded only from a local checkpoint file.

Score of one video: the mean over `clipscore.frames` uniformly sampled frames (first and last included; every
frame when the video is shorter) of `100 * cos(E_img(frame), E_txt(text))`, with both embeddings L2-normalised.
This is the usual CLIP-score scale (cosine x 100). Unlike CLIP-S (Hessel et al. 2021: 2.5 * max(cos, 0)) and
torchmetrics' CLIPScore (max(100 * cos, 0)), negative cosines are not clipped, so a score below 0 stays visible.
Score of a run: the mean over its videos (also reported: std, min, max, count).

Text: the prompt's short text, the `scene_description` of its MTSS caption (`sara.data.mtss`). A sampled run's
`index.json` names its `prompt_set` and each video's `prompt_id`; the caption comes from that prompt set
(`sara.sample.load_prompts`). CLIP's text tower reads at most its context length (77 tokens for the OpenAI-style
tokenizer); longer text is cut there by the tokenizer.

Weights: `clipscore.model` is an open_clip architecture name (e.g. `ViT-B-32`) and `clipscore.checkpoint` a local
state-dict file (.pt / .pth / .bin / .safetensors) of that architecture. Nothing is ever downloaded: the checkpoint
path is passed to open_clip as a file, never as a pretrained tag, and `hf-hub:` / `local-dir:` model names are
refused. Files are read with torch's safe loader (weights only), which refuses TorchScript archives such as
OpenAI's original `ViT-B-32.pt` (VBench's `clip_model/`): save such a model's state dict once as a plain file.
OpenAI's CLIP weights were trained with QuickGELU and need the `-quickgelu` architecture (`ViT-B-32-quickgelu`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sara.data.video_io import read_video
from sara.sample import load_prompts

CHECKPOINT_PARAM = "clipscore.checkpoint"
CHECKPOINT_WHAT = (
    "the open_clip weights of the architecture named by clipscore.model "
    "(a state-dict file: .pt, .pth, .bin or .safetensors)"
)
TEXT_FIELD = "scene_description"
CONVENTION = "100 * cosine(normalised image embedding, normalised text embedding), mean over sampled frames; not clipped at 0"


def require_file(param: str, value: str | None, what: str) -> Path:
    """Return an existing local weights file or raise one clear error naming the param and path.

    Nothing is ever downloaded: weights load from files named in params.
    """
    if not value:
        raise FileNotFoundError(f"{param} is not set: it must name a local file containing {what}")
    p = Path(value).expanduser()
    if not p.is_file():
        state = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise FileNotFoundError(f"{param} = {value!r} {state}: it must be a local file containing {what}")
    return p


def frame_indices(n_frames: int, k: int) -> list[int]:
    """`k` frame indices spread uniformly over `n_frames` (first and last included); all frames if fewer."""
    if n_frames < 1:
        raise ValueError("a video needs at least one frame")
    if k < 1:
        raise ValueError("clipscore.frames must be >= 1")
    if k >= n_frames:
        return list(range(n_frames))
    return [int(round(x)) for x in np.linspace(0, n_frames - 1, k)]


def prompt_text(caption: Any) -> str:
    """The short text CLIP reads for a prompt: the MTSS caption's `scene_description`."""
    return caption.english.scene_description


@dataclass
class ClipScorer:
    """An open_clip model in eval mode, its validation transform and tokenizer, on one device."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    model_name: str
    checkpoint: str
    _text_cache: dict = field(default_factory=dict, repr=False)

    def text_embedding(self, text: str):
        """(D,) L2-normalised text embedding (computed once per distinct text)."""
        import torch

        if text not in self._text_cache:
            with torch.no_grad():
                tokens = self.tokenizer([text]).to(self.device)
                emb = self.model.encode_text(tokens).float()[0]
            self._text_cache[text] = emb / emb.norm()
        return self._text_cache[text]

    def image_inputs(self, frames: np.ndarray):
        """(K, H, W, 3) uint8 frames -> (K, 3, S, S) model inputs through the model's validation transform."""
        import torch
        from PIL import Image

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (K, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
        return torch.stack([self.preprocess(Image.fromarray(f)) for f in frames]).to(self.device)

    def image_embeddings(self, frames: np.ndarray):
        """(K, D) L2-normalised image embeddings of (K, H, W, 3) uint8 frames."""
        import torch

        with torch.no_grad():
            emb = self.model.encode_image(self.image_inputs(frames)).float()
        return emb / emb.norm(dim=-1, keepdim=True)

    def frame_scores(self, frames: np.ndarray, text: str) -> np.ndarray:
        """(K,) per-frame 100 * cosine between each given frame and the text."""
        scores = 100.0 * (self.image_embeddings(frames) @ self.text_embedding(text))
        return scores.cpu().numpy().astype(np.float64)

    def score(self, frames: np.ndarray, text: str, n_frames: int = 8) -> float:
        """CLIP score of one video (F, H, W, 3) uint8: mean over `n_frames` uniformly sampled frames."""
        idx = frame_indices(len(frames), n_frames)
        return float(self.frame_scores(np.asarray(frames)[idx], text).mean())


def load_clip_model(model_name: str, checkpoint: str | None, device: str = "cpu") -> ClipScorer:
    """Build `model_name` and load its weights from the local file `checkpoint` (never a download)."""
    import open_clip

    path = require_file(CHECKPOINT_PARAM, checkpoint, CHECKPOINT_WHAT).resolve()
    if model_name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(
            f"clipscore.model = {model_name!r}: must be an open_clip architecture name (e.g. ViT-B-32); "
            f"weights come only from {CHECKPOINT_PARAM}"
        )
    if model_name not in open_clip.list_models():
        raise ValueError(f"clipscore.model = {model_name!r} is not an open_clip architecture; known: {open_clip.list_models()}")
    try:
        # An absolute existing path is never taken for a pretrained tag (tags hold no '/'), so this only reads the file.
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device, require_pretrained=True)
    except RuntimeError as err:
        raise RuntimeError(
            f"{CHECKPOINT_PARAM} = {checkpoint!r} could not be loaded into clipscore.model = {model_name!r}: {err}"
        ) from err
    model.eval()
    return ClipScorer(model, preprocess, open_clip.get_tokenizer(model_name), device, model_name, str(path))


def summarise(values: list[float]) -> dict[str, float | int | None]:
    """Mean, std (population), min, max and count of per-video scores; None values when there are none."""
    if not values:
        return {"clip_score": None, "std": None, "min": None, "max": None, "n_videos": 0}
    a = np.asarray(values, dtype=np.float64)
    return {"clip_score": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()), "n_videos": len(a)}


def score_run(scorer: ClipScorer, folder: str | Path, n_frames: int, default_prompt_set: str) -> tuple[list[dict], dict]:
    """Score every prompt-set video of one sampled run (`folder/index.json`); (per-video rows, the run's summary).

    Only the prompt-set videos (`videos` of index.json) are scored; the VBench suites have no MTSS caption.
    """
    from tqdm import tqdm

    folder = Path(folder)
    run = folder.name
    if not (folder / "index.json").is_file():
        raise FileNotFoundError(f"{folder / 'index.json'} not found: run `sara sample --run {run}` first")
    index = json.loads((folder / "index.json").read_text())
    set_name = index.get("prompt_set", default_prompt_set)
    prompts = {p.id: p for p in load_prompts(set_name)}
    rows: list[dict] = []
    values = []
    for v in tqdm(index["videos"], desc=f"clipscore {run}", unit="video"):
        if v["prompt_id"] not in prompts:
            raise KeyError(f"{folder / 'index.json'}: prompt_id {v['prompt_id']!r} is not in prompt set {set_name!r}")
        text = prompt_text(prompts[v["prompt_id"]].caption)
        frames, _ = read_video(folder / v["mp4"])
        s = scorer.score(frames, text, n_frames)
        values.append(s)
        rows.append({"run": run, "prompt_id": v["prompt_id"], "seed": v["seed"], "video": v["mp4"],
                     "frames_used": len(frame_indices(len(frames), n_frames)), "clip_score": s, "text": text})
    return rows, summarise(values)
