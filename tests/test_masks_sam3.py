"""SAM 3 backend end to end with a tiny random SAM 3 video model saved with save_pretrained into a temp dir and
loaded back through the real loading code (`masks.sam3_dir`); also the masks stage with that backend."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sara.config import params_from_dict
from sara.data import clips
from sara.data import synthetic as S
from sara.data.mtss import foreground_references, noun_phrase
from sara.masks.sam3 import Sam3Segmenter, load_sam3
from sara.masks.store import load_masks

IMAGE = 56  # SAM 3 input size of the tiny model (patch 14 -> 4x4 tokens)


def save_tiny_sam3(path: Path) -> Path:
    """Random-init Sam3VideoModel + Sam3VideoProcessor small enough for CPU, written with save_pretrained.

    The detector's DETR/geometry/mask-decoder widths and the FPN must be 256 because the tracker is built for 256.
    Detection thresholds are 0 so a random model yields instances; the selection threshold stays with our params.
    """
    import torch
    from transformers import CLIPTokenizer, Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    from transformers.models.sam3.configuration_sam3 import (
        Sam3Config, Sam3DETRDecoderConfig, Sam3DETREncoderConfig, Sam3GeometryEncoderConfig, Sam3MaskDecoderConfig,
        Sam3VisionConfig, Sam3ViTConfig,
    )
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)} | {c + "</w>": 26 + i for i, c in enumerate(letters)}
    vocab |= {"<|startoftext|>": 52, "<|endoftext|>": 53}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    backbone = Sam3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             image_size=IMAGE, pretrain_image_size=IMAGE, patch_size=14, window_size=2,
                             global_attn_indexes=[1])
    vision = Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=256, scale_factors=[4.0, 2.0, 1.0, 0.5])
    text = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "projection_dim": 32,
            "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 32,
            "bos_token_id": 52, "eos_token_id": 53, "pad_token_id": 53}
    detector = Sam3Config(
        vision_config=vision, text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(hidden_size=256, num_layers=1, num_attention_heads=4,
                                                          intermediate_size=64, mask_fuser_hidden_size=256,
                                                          mask_fuser_num_layers=1),
        detr_encoder_config=Sam3DETREncoderConfig(hidden_size=256, num_layers=1, num_attention_heads=4,
                                                  intermediate_size=64),
        detr_decoder_config=Sam3DETRDecoderConfig(hidden_size=256, num_layers=1, num_queries=2,
                                                  num_attention_heads=4, intermediate_size=64),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=256, num_upsampling_stages=2),
    )
    tracker = {"vision_config": vision.to_dict(), "image_size": IMAGE, "num_maskmem": 2,
               "memory_attention_num_layers": 1, "memory_attention_feed_forward_hidden_size": 64,
               "memory_fuser_num_layers": 1, "memory_fuser_intermediate_dim": 64,
               "mask_decoder_config": {"mlp_dim": 64, "num_hidden_layers": 1, "iou_head_hidden_dim": 32}}
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, score_threshold_detection=0.0,
                             new_det_thresh=0.0, hotstart_delay=0, max_num_objects=4)
    config.image_size = IMAGE
    Sam3VideoModel(config).save_pretrained(path)
    Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(size={"height": IMAGE, "width": IMAGE}),
        video_processor=Sam2VideoVideoProcessor(size={"height": IMAGE, "width": IMAGE}),
        tokenizer=tokenizer,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam3(tmp_path_factory.mktemp("sam3"))


def _params(sam3_dir: Path | None, tmp: Path, score_threshold: float = 0.0):
    return params_from_dict({
        "project": {"device": "cpu"},
        "data": {"out_dir": str(tmp / "clips"), "frames": 4, "height": 32, "width": 32},
        "masks": {"backend": "sam3", "sam3_dir": str(sam3_dir) if sam3_dir else None,
                  "score_threshold": score_threshold, "out_dir": str(tmp / "masks"), "budget_grid": [2, 2, 2]},
    })


def _write_clips(root: Path, n: int = 2) -> list:
    records = []
    for i in range(n):
        sp = S.random_spec(np.random.default_rng([21, i]), min_entities=2, max_entities=3, height=32, width=32)
        video, masks, truth = S.render(sp, 4, 32, 32, 8)
        caption = S.spec_to_mtss(sp, frames=4, height=32, width=32, fps=8)
        records.append(clips.write_clip(root, f"train_{i:04d}", "train", video, 8, caption))  # no GT masks
    clips.write_index(root, records, "folder", "embedded")
    return records


def test_tiny_sam3_segments_each_entity_by_its_noun_phrase(sam3_dir: Path, tmp_path: Path) -> None:
    rec = _write_clips(tmp_path / "clips", 1)[0]
    clip = clips.load_clip(rec.folder(tmp_path / "clips"))
    seg = Sam3Segmenter.from_params(_params(sam3_dir, tmp_path))
    m = seg.segment(clip.clip_id, clip.frames, clip.caption)
    refs = foreground_references(clip.caption)
    assert m.ref_ids == [r.ref_id for r in refs]
    assert m.prompts == [noun_phrase(r) for r in refs]
    assert m.entities.shape == (len(refs), 4, 32, 32) and m.entities.dtype == bool
    assert m.backend == "sam3"
    found = m.entities.reshape(len(refs), -1).any(1)
    assert found.any()  # thresholds at 0: the random model's instances are kept
    assert np.all((m.scores > 0) == found) and np.all(m.scores <= 1.0)

    strict = Sam3Segmenter(seg.model, seg.processor, "cpu", score_threshold=1.0)
    none = strict.segment(clip.clip_id, clip.frames, clip.caption)
    assert not none.entities.any() and not none.scores.any()  # below the selection threshold: empty, score 0


def test_masks_stage_with_sam3_backend(sam3_dir: Path, tmp_path: Path, tracking) -> None:
    from sara.stages import masks as stage

    records = _write_clips(tmp_path / "clips", 2)
    params = _params(sam3_dir, tmp_path)
    out = stage.run(params)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "sam3" and summary["clips"] == 2 and summary["budget_grid"] == [2, 2, 2]
    for rec in records:
        m = load_masks(out, rec.clip_id)
        assert m.backend == "sam3" and m.entities.shape[1:] == (4, 32, 32)
        assert summary["per_clip"][rec.clip_id]["entities"] == len(m.ref_ids)
    metrics = json.loads(stage.metrics_path(out).read_text())
    assert set(metrics) >= {"p_fg_mean", "share.or.fg_bg", "coverage.none.bg_bg", "entities_found_fraction"}


def test_missing_weights_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^masks.sam3_dir is not set: it must name a local directory "
                                                r"containing a transformers SAM 3 video model"):
        load_sam3(None)
    missing = tmp_path / "sam3-weights"
    with pytest.raises(FileNotFoundError, match=rf"masks.sam3_dir = '{missing}' does not exist"):
        Sam3Segmenter.from_params(_params(missing, tmp_path))
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_sam3(str(missing))


# ----------------------------------------------------------------------------------------------------------------
# Official post-processing: a scripted model stream checked against Sam3VideoProcessor.postprocess_outputs


FRAMES, SIDE, LOW = 6, 32, 8  # fake clip: 6 frames of 32x32; low-res mask logits 8x8 (as SAM 3's 288 of 1008)


def _disc_logits(cy: float, cx: float, r: float) -> "torch.Tensor":
    import torch

    yy, xx = torch.meshgrid(torch.arange(LOW) + 0.5, torch.arange(LOW) + 0.5, indexing="ij")
    return (4.0 * (r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()))[None]  # (1, LOW, LOW) logits


class ScriptedSam3:
    """Stands in for Sam3VideoModel: a fixed per-frame output stream with SAM 3's hot-start buffering.

    Objects 0 and 1 are overlapping instances of one phrase whose tracker scores swap half-way; object 2 is another
    phrase overlapping object 0 (different prompts may overlap); object 3 is suppressed on frames 2-3; object 4 is
    removed by the hot-start rules at frame 2 (so it is hidden in every frame yielded after that)."""

    PHRASE = {0: "red circle", 1: "red circle", 2: "blue square", 3: "red circle", 4: "red circle"}
    DELAY = 2  # hot-start delay in frames: outputs are held back and yielded once removals are known

    def _frame(self, session, f: int):
        import torch
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoSegmentationOutput

        for obj, phrase in self.PHRASE.items():
            session.obj_id_to_prompt_id[obj] = next(i for i, p in session.prompts.items() if p == phrase)
        masks = {0: _disc_logits(3.5, 3.0 + 0.2 * f, 2.2), 1: _disc_logits(4.0, 4.5, 2.0),
                 2: _disc_logits(3.0, 2.5, 1.5), 3: _disc_logits(6.5, 1.5, 1.2), 4: _disc_logits(1.5, 6.0, 1.3)}
        first_half = f < FRAMES // 2
        tracker = {0: 0.9 if first_half else 0.3, 1: 0.4 if first_half else 0.8, 2: 0.7, 3: 0.6, 4: 0.5}
        return Sam3VideoSegmentationOutput(
            object_ids=sorted(masks), obj_id_to_mask={k: v.to(torch.float32) for k, v in masks.items()},
            obj_id_to_score={0: 0.9, 1: 0.8, 2: 0.7, 3: 0.75, 4: 0.95}, obj_id_to_tracker_score=tracker,
            removed_obj_ids={4} if f == 2 else set(), suppressed_obj_ids={3} if f in (2, 3) else set(), frame_idx=f,
        )

    def propagate_in_video_iterator(self, inference_session, **_):
        buffer = []
        for f in range(FRAMES):
            out = self._frame(inference_session, f)
            buffer.append(out)
            inference_session.hotstart_removed_obj_ids.update(out.removed_obj_ids)
            if f == FRAMES - 1:
                yield from buffer
            elif len(buffer) >= self.DELAY:
                yield buffer.pop(0)


def _reference_masks(processor, frames: np.ndarray, phrases: list[str]) -> tuple[dict, dict]:
    """What transformers' own pipeline gives: postprocess_outputs on every yielded frame, as its docs show."""
    session = processor.init_video_session(video=list(frames), inference_device="cpu", processing_device="cpu",
                                           video_storage_device="cpu")
    processor.add_text_prompt(session, phrases)
    masks: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    for out in ScriptedSam3().propagate_in_video_iterator(inference_session=session):
        post = processor.postprocess_outputs(session, out)
        for obj, m, s in zip(post["object_ids"].tolist(), post["masks"], post["scores"].tolist()):
            masks.setdefault(obj, np.zeros((FRAMES, SIDE, SIDE), bool))[out.frame_idx] = m.numpy()
            scores[obj] = max(scores.get(obj, 0.0), s)
    return masks, scores


def test_masks_follow_the_processors_official_postprocessing(sam3_dir: Path) -> None:
    from transformers import Sam3VideoProcessor

    processor = Sam3VideoProcessor.from_pretrained(sam3_dir)
    frames = np.zeros((FRAMES, SIDE, SIDE, 3), np.uint8)
    phrases = ["red circle", "blue square"]
    want, want_scores = _reference_masks(processor, frames, phrases)
    assert not (want[0] & want[1]).any() and (want[0] & want[2]).any()  # the scenario exercises the constraint
    assert not want[3][2:4].any() and want[3][0].any() and not want[4][1:].any()

    seg = Sam3Segmenter(ScriptedSam3(), processor, "cpu", score_threshold=0.0)
    got, got_scores, prompt = seg._track(frames, phrases)
    overlap = int((got[0] & got[1]).sum())
    assert overlap == 0, f"instances of one phrase share {overlap} pixels"
    assert sorted(got) == sorted(want)
    for obj in want:
        np.testing.assert_array_equal(got[obj], want[obj], err_msg=f"object {obj}")
        assert got_scores[obj] == pytest.approx(want_scores[obj])
        assert prompt[obj] == ScriptedSam3.PHRASE[obj]




class ShiftedSam3(ScriptedSam3):
    """The scripted stream with every logit lowered by `shift`."""

    shift = math.log(0.9 / 0.1)

    def _frame(self, session, f: int):
        out = super()._frame(session, f)
        out.obj_id_to_mask = {o: m - self.shift for o, m in out.obj_id_to_mask.items()}
        return out


def test_mask_threshold_shifts_the_logits_before_the_official_postprocessing(sam3_dir: Path) -> None:
    """masks.mask_threshold 0.9 equals the processor's output on logits lowered by logit(0.9)."""
    from transformers import Sam3VideoProcessor

    processor = Sam3VideoProcessor.from_pretrained(sam3_dir)
    frames = np.zeros((FRAMES, SIDE, SIDE, 3), np.uint8)
    phrases = ["red circle", "blue square"]
    got, _, _ = Sam3Segmenter(ScriptedSam3(), processor, "cpu", mask_threshold=0.9)._track(frames, phrases)
    want, _, _ = Sam3Segmenter(ShiftedSam3(), processor, "cpu", mask_threshold=0.5)._track(frames, phrases)
    loose, _, _ = Sam3Segmenter(ScriptedSam3(), processor, "cpu", mask_threshold=0.5)._track(frames, phrases)
    assert sorted(got) == sorted(want)
    for obj in want:
        np.testing.assert_array_equal(got[obj], want[obj], err_msg=f"object {obj}")
    assert sum(m.sum() for m in got.values()) < sum(m.sum() for m in loose.values())
