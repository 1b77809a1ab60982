"""SAM 3 backend end to end with a tiny random SAM 3 video model saved with save_pretrained into a temp dir and
loaded back through the real loading code (`masks.sam3_dir`); also the masks stage with that backend."""

from __future__ import annotations

import json
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
