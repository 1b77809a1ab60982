"""Mask backend `sam3`: transformers' SAM 3 video model, text-prompted with each entity's noun phrase.

Pipeline per clip (the paper's mask-extraction step, docs/data.md): every PERSON_*/OBJECT_* reference gives a 2-5 word noun phrase
(`sara.data.mtss.noun_phrase`); all distinct phrases are added as text prompts to one video session; SAM 3 detects
and tracks instances through the clip; every frame goes through transformers' official post-processing
(`Sam3VideoProcessor.postprocess_outputs`: hidden instances dropped, instances of one phrase never share a pixel);
each entity gets the best-scoring instance of its phrase. When several
entities share a phrase (e.g. two "red circle"s) its top instances are handed out by area rank, largest first, in
caption order: the paper's fallback ("area-ranked assignment"); its Qwen box matching is not reproduced. An entity
with no instance scoring >= `masks.score_threshold` gets an empty mask and score 0.

Weights load only from the local directory `masks.sam3_dir` (`Sam3VideoModel` + `Sam3VideoProcessor` saved with
`save_pretrained`); nothing is downloaded. The model's own detection thresholds come from its config.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sara.config import Params
from sara.weights import require_dir
from sara.env import resolve_device
from sara.data.mtss import MTSSCaption, foreground_references, noun_phrase
from sara.masks.store import EntityMasks

SAM3_CONTENTS = (
    "a transformers SAM 3 video model saved with save_pretrained (config.json with model_type 'sam3_video', "
    "model.safetensors) plus its Sam3VideoProcessor files (processor_config.json, tokenizer files)"
)


def load_sam3(sam3_dir: str | None, device: str = "cpu") -> tuple[Any, Any]:
    """(Sam3VideoModel in eval mode on `device`, Sam3VideoProcessor) from the local directory `masks.sam3_dir`."""
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    path = require_dir("masks.sam3_dir", sam3_dir, SAM3_CONTENTS)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"masks.sam3_dir = {sam3_dir!r} has no config.json: it must contain {SAM3_CONTENTS}")
    model = Sam3VideoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    processor = Sam3VideoProcessor.from_pretrained(path, local_files_only=True)
    return model, processor


@dataclass
class Sam3Segmenter:
    model: Any
    processor: Any
    device: str = "cpu"
    score_threshold: float = 0.5  # an instance needs at least this detection score to become an entity mask
    mask_threshold: float = 0.5  # mask probability -> binary (0.5 = the processor's own logit > 0)

    @classmethod
    def from_params(cls, params: Params) -> "Sam3Segmenter":
        device = str(resolve_device(params.project.device))
        model, processor = load_sam3(params.masks.sam3_dir, device)
        return cls(model, processor, device, params.masks.score_threshold, params.masks.mask_threshold)

    def _track(self, frames: np.ndarray, phrases: list[str]) -> tuple[dict[int, np.ndarray], dict[int, float], dict[int, str]]:
        """Run SAM 3 on the clip: per instance id its (F, H, W) bool masks, best score and prompt phrase.

        Every yielded frame goes through the processor's own `postprocess_outputs`, as transformers documents the
        video pipeline: masks upsampled to the video size, zero-area, suppressed and hot-start-removed instances
        hidden, and the per-prompt non-overlap rule (a pixel claimed by two instances of one phrase goes to the one
        with the higher tracker score). `masks.mask_threshold` is applied by shifting the low-res logits by
        logit(threshold) before that step (bilinear upsampling is linear, so this equals thresholding the
        upsampled probabilities); at 0.5 the shift is 0 and the output is the processor's, bit for bit.
        """
        import torch

        n, h, w = frames.shape[:3]
        session = self.processor.init_video_session(
            video=list(frames), inference_device=self.device, processing_device="cpu", video_storage_device="cpu"
        )
        self.processor.add_text_prompt(session, phrases)
        shift = math.log(self.mask_threshold / (1.0 - self.mask_threshold))
        masks: dict[int, np.ndarray] = {}
        scores: dict[int, float] = {}
        prompt: dict[int, str] = {}
        with torch.inference_mode():
            for out in self.model.propagate_in_video_iterator(inference_session=session):
                if shift:
                    out = replace(out, obj_id_to_mask={o: m.float() - shift for o, m in out.obj_id_to_mask.items()})
                post = self.processor.postprocess_outputs(session, out)
                for phrase, ids in post["prompt_to_obj_ids"].items():
                    prompt.update(dict.fromkeys(ids, phrase))
                for obj_id, mask, score in zip(post["object_ids"].tolist(), post["masks"], post["scores"].tolist()):
                    masks.setdefault(obj_id, np.zeros((n, h, w), bool))[out.frame_idx] = mask.cpu().numpy()
                    scores[obj_id] = max(scores.get(obj_id, 0.0), float(score))
        return masks, scores, prompt

    def segment(self, clip_id: str, frames: np.ndarray, caption: MTSSCaption) -> EntityMasks:
        """Per-entity masks for one clip (frames (F, H, W, 3) uint8), rows in caption order."""
        refs = foreground_references(caption)
        phrases = [noun_phrase(r) for r in refs]
        n, h, w = frames.shape[:3]
        entities = np.zeros((len(refs), n, h, w), bool)
        found = np.zeros(len(refs), np.float32)
        if refs:
            masks, scores, prompt = self._track(frames, list(dict.fromkeys(phrases)))
            for phrase in dict.fromkeys(phrases):
                ks = [k for k, p in enumerate(phrases) if p == phrase]
                cands = [o for o in masks if prompt[o] == phrase and scores[o] >= self.score_threshold and masks[o].any()]
                cands = sorted(cands, key=lambda o: (-scores[o], o))[: len(ks)]
                if len(ks) > 1:  # area-ranked assignment among entities that share the phrase
                    cands = sorted(cands, key=lambda o: (-int(masks[o].sum()), o))
                for k, o in zip(ks, cands):
                    entities[k] = masks[o]
                    found[k] = scores[o]
        return EntityMasks(clip_id, [r.ref_id for r in refs], entities, "sam3", found, phrases)
