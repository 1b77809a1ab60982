"""Frozen encoders: preprocessing, grids, the feature cache, and the real-weight loaders (tiny random models saved
with save_pretrained and loaded back through build_vfm / build_text_model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from aligner_testlib import save_tiny_bert, save_tiny_qwen3vl, tiny_vfm_params
from torch.testing import assert_close

from sara.config import TextParams
from sara.models.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_text_model,
    build_vfm,
    cached_features,
    clip_content_hash,
    feature_cache_path,
    sample_frame_indices,
)


def _video(b=1, f=6, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, f, h, w, 3), generator=g, dtype=torch.uint8)


def test_frames_are_sampled_at_bin_centres():
    assert sample_frame_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_frame_indices(8, 8).tolist() == list(range(8))
    assert sample_frame_indices(3, 4).tolist() == [0, 1, 1, 2]  # short clips repeat frames


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_preprocess_resizes_the_full_frame_and_normalises_with_imagenet_statistics():
    vfm = build_vfm(tiny_vfm_params())
    video = torch.full((2, 5, 48, 40, 3), 128, dtype=torch.uint8)
    video[..., 1] = 0
    pix = vfm.preprocess(video)
    assert pix.shape == (2, 4, 3, 32, 32)
    expected = [(128 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
                (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]]
    for c in range(3):
        assert_close(pix[:, :, c], torch.full_like(pix[:, :, c], expected[c]), atol=1e-5, rtol=0)


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_preprocess_takes_the_sampled_frames_in_order():
    vfm = build_vfm(tiny_vfm_params(image_size=32))
    video = torch.zeros(1, 8, 32, 32, 3, dtype=torch.uint8)
    for f in range(8):
        video[:, f] = f * 10
    pix = vfm.preprocess(video)  # frames 1, 3, 5, 7
    got = pix[0, :, 0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert_close(got, torch.tensor([10.0, 30.0, 50.0, 70.0]) / 255, atol=1e-6, rtol=0)


def test_bad_video_shape_is_refused():
    vfm = build_vfm(tiny_vfm_params())
    with pytest.raises(ValueError, match=r"frames must be \(B, F, H, W, 3\)"):
        vfm.preprocess(torch.zeros(4, 32, 32, 3, dtype=torch.uint8))


def test_tiny_vfm_grid_and_feature_shape():
    vfm = build_vfm(tiny_vfm_params())
    assert vfm.grid == (2, 2, 2) and vfm.dim == 16 and vfm.num_tokens == 8
    feats = vfm.features(_video(b=2))
    assert feats.shape == (2, 2, 4, 16)
    assert not any(p.requires_grad for p in vfm.model.parameters())


def test_tiny_vfm_is_seeded_and_its_tag_follows_weights_and_preprocessing():
    a, b = build_vfm(tiny_vfm_params()), build_vfm(tiny_vfm_params())
    assert a.tag == b.tag
    assert_close(a.features(_video()), b.features(_video()))
    assert build_vfm(tiny_vfm_params(seed=1)).tag != a.tag
    assert build_vfm(tiny_vfm_params(frames=6)).tag != a.tag


def test_local_vjepa_loads_from_a_save_pretrained_directory(tmp_path):
    src = build_vfm(tiny_vfm_params())
    src.model.save_pretrained(tmp_path / "vjepa")
    local = build_vfm(tiny_vfm_params(kind="local", path=str(tmp_path / "vjepa")))
    assert local.grid == src.grid and local.dim == src.dim
    video = _video(b=2)
    assert_close(local.features(video), src.features(video))
    assert not any(p.requires_grad for p in local.model.parameters())


def test_missing_vfm_directory_gives_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vfm\.path = .*nope.* does not exist: it must be a local directory"):
        build_vfm(tiny_vfm_params(kind="local", path=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match=r"vfm\.path is not set"):
        build_vfm(tiny_vfm_params(kind="local", path=None))


def test_feature_cache_writes_once_then_reads(tmp_path):
    vfm = build_vfm(tiny_vfm_params())
    clip = SimpleNamespace(clip_id="clip_0", frames=_video()[0].numpy())
    first = cached_features(vfm, clip, tmp_path)
    path = feature_cache_path(vfm, tmp_path, "clip_0", clip_content_hash(clip.frames))
    assert path.parent == tmp_path / vfm.tag and path.is_file()
    assert first.shape == (2, 4, 16)

    def boom(_):
        raise AssertionError("features recomputed although cached")

    vfm.features = boom
    assert_close(cached_features(vfm, clip, tmp_path), first)


def test_feature_cache_is_keyed_by_clip_content_not_clip_id(tmp_path):
    """Re-rendered clips (same ids, new pixels) must never read the old tensors."""
    vfm = build_vfm(tiny_vfm_params())
    old = SimpleNamespace(clip_id="clip_0", frames=_video()[0].numpy())
    cached_features(vfm, old, tmp_path)
    new = SimpleNamespace(clip_id="clip_0", frames=(255 - old.frames).copy())  # same id and shape, other content
    feats = cached_features(vfm, new, tmp_path)
    assert_close(feats, vfm.features(torch.as_tensor(new.frames)[None])[0].cpu())
    assert not torch.allclose(feats, cached_features(vfm, old, tmp_path))
    assert len(list((tmp_path / vfm.tag).glob("clip_0-*.pt"))) == 1  # the superseded entry is gone


def test_feature_cache_key_covers_the_whole_vfm_config_and_the_preprocessing_version(monkeypatch):
    import sara.models.encoders as enc

    a = build_vfm(tiny_vfm_params())
    assert build_vfm(tiny_vfm_params()).tag == a.tag  # deterministic
    assert a.identity["vfm"]["frames"] == a.frames and "cache_dir" not in a.identity["vfm"]
    monkeypatch.setattr(enc, "PREPROCESS_CODE_VERSION", "v2")
    assert build_vfm(tiny_vfm_params()).tag != a.tag


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_a_failed_features_stage_leaves_no_partial_cache(tmp_path, monkeypatch, tracking):
    import numpy as np

    from sara.config import Params
    from sara.data import clips, synthetic as S
    from sara.models.encoders import VideoEncoder
    from sara.stages import features as stage

    records = []
    for i in range(3):
        sp = S.random_spec(np.random.default_rng([5, i]), height=32, width=32)
        video, _, _ = S.render(sp, 4, 32, 32, 8)
        records.append(clips.write_clip(tmp_path / "clips", f"train_{i}", "train", video, 8,
                                        S.spec_to_mtss(sp, frames=4, height=32, width=32, fps=8)))
    clips.write_index(tmp_path / "clips", records, "folder", "embedded")
    cache = tmp_path / "features"
    params = Params.model_validate({"data": {"out_dir": str(tmp_path / "clips")},
                                    "vfm": tiny_vfm_params(cache_dir=str(cache)).model_dump()})
    real, calls = VideoEncoder.features, []

    def crash_on_third_clip(self, frames):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("encoder crashed")
        return real(self, frames)

    monkeypatch.setattr(VideoEncoder, "features", crash_on_third_clip)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        stage.run(params, progress=False)
    assert not cache.exists() and not list(tmp_path.glob(".features*"))  # nothing half-built is left


def test_minilm_loader_embeds_with_the_lookup_and_encodes_with_the_full_model(tmp_path):
    text = build_text_model(TextParams(kind="minilm", path=str(save_tiny_bert(tmp_path / "bert")), max_tokens=16))
    captions = ["a red circle", "a small blue striped square moving left"]
    tokens, mask = text.embed(captions)
    ids = [text.tokenizer(c, add_special_tokens=False)["input_ids"] for c in captions]
    assert mask.sum(1).tolist() == [len(x) for x in ids]
    assert_close(tokens[0, : len(ids[0])], text.model.embeddings.word_embeddings.weight[ids[0]])
    # E_lm reference: the model on input_ids with its own special tokens, mean pooled, L2-normalised
    h = text.encode_texts(captions)
    for i, c in enumerate(captions):
        enc = text.tokenizer(c, return_tensors="pt")
        ref = text.model(**enc).last_hidden_state.mean(1)[0]
        assert_close(h[i], torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-5)
    assert_close(h.norm(dim=-1), torch.ones(2))


def test_default_minilm_is_the_packaged_all_minilm_l6_v2():
    text = build_text_model(TextParams())
    assert text.dim == 384 and text.pooling == "mean"
    h = text.encode_texts(["a red circle", "a red disc", "a dark night sky with small stars"])
    sims = h @ h.t()
    assert sims[0, 1] > sims[0, 2]  # real weights: related captions are closer


def test_qwen3vl_embedding_loader_uses_last_token_pooling_and_the_chat_template(tmp_path):
    path = save_tiny_qwen3vl(tmp_path / "qwen")
    text = build_text_model(TextParams(kind="qwen3vl_embedding", path=str(path), max_tokens=16))
    assert text.pooling == "last" and text.dim == 32
    captions = ["a red circle", "the blue square moving quickly to the left"]
    h = text.encode_texts(captions)
    for i, c in enumerate(captions):  # reference: one unpadded sequence through input_ids, last token
        ids = text.tokenizer.apply_chat_template(
            [{"role": "system", "content": "Represent the user's input."}, {"role": "user", "content": c}],
            tokenize=False)
        enc = text.tokenizer(ids, add_special_tokens=False, return_tensors="pt")
        out = text.model(input_ids=enc["input_ids"], mm_token_type_ids=torch.zeros_like(enc["input_ids"]))
        ref = torch.nn.functional.normalize(out.last_hidden_state[0, -1], dim=-1)
        assert_close(h[i], ref, atol=1e-5, rtol=1e-5)


def test_qwen3vl_without_chat_template_pools_an_appended_eos(tmp_path):
    path = save_tiny_qwen3vl(tmp_path / "qwen", chat_template=False)
    text = build_text_model(TextParams(kind="qwen3vl_embedding", path=str(path)))
    assert text.prefix_ids == [] and text.suffix_ids == [text.tokenizer.eos_token_id]


def test_missing_text_directory_gives_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"text\.path is not set: it must name a local directory containing "
                                                r"Qwen3-VL-Embedding"):
        build_text_model(TextParams(kind="qwen3vl_embedding"))
    with pytest.raises(FileNotFoundError, match=r"text\.path = .*absent.* does not exist"):
        build_text_model(TextParams(kind="minilm", path=str(tmp_path / "absent")))


def test_a_sequence_longer_than_the_text_models_positions_is_refused(tmp_path):
    text = build_text_model(TextParams(kind="minilm", path=str(save_tiny_bert(tmp_path / "bert")), max_tokens=256))
    with pytest.raises(ValueError, match=r"sequence of 202 tokens exceeds the text model's 128 positions: lower "
                                         r"text\.max_tokens or raise aligner\.nce_pool"):
        text.encode_embeds(torch.zeros(1, 200, text.dim))


# ----------------------------------------------------------------------------------------------------------------
# vfm.resize short_side_crop (the official V-JEPA 2 video processor) and vfm.frame_sampling stride


@pytest.mark.parametrize("hw", [(40, 56), (56, 40), (32, 32)])
def test_short_side_crop_matches_the_vjepa2_video_processor(hw):
    from transformers import VJEPA2VideoProcessor

    vfm = build_vfm(tiny_vfm_params(resize="short_side_crop"))  # 4 frames, 32 px crop
    video = _video(b=1, f=4, h=hw[0], w=hw[1], seed=3)
    ref = VJEPA2VideoProcessor(crop_size=32)(videos=[video[0]], return_tensors="pt").pixel_values_videos
    ours = vfm.preprocess(video)
    assert ours.shape == ref.shape == (1, 4, 3, 32, 32)
    assert_close(ours, ref, atol=1e-5, rtol=0)
    assert_close(vfm.features(video), vfm.encode(ref), atol=1e-5, rtol=1e-5)  # same features as the processor's
    if hw != (32, 32):  # a non-square frame: the square resize sees something else
        assert (build_vfm(tiny_vfm_params()).preprocess(video) - ref).abs().max() > 0.1


def test_masks_go_through_the_same_resize_and_crop_as_the_pixels():
    """A mask drawn as a 0/255 video through the processor (no normalisation) = our mask view, up to uint8 rounding."""
    from transformers import VJEPA2VideoProcessor

    vfm = build_vfm(tiny_vfm_params(resize="short_side_crop"))
    mask = torch.zeros(4, 40, 56, dtype=torch.bool)
    mask[:, 5:30, 2:20] = True  # partly in the left margin the centre crop drops
    as_video = (mask[..., None].expand(4, 40, 56, 3).to(torch.uint8) * 255)
    ref = VJEPA2VideoProcessor(crop_size=32, do_normalize=False)(videos=[as_video], return_tensors="pt")
    ref = ref.pixel_values_videos[0, :, 0]  # (4, 32, 32) in [0, 1]
    seen = vfm.masks_seen(mask)
    assert seen.shape == (4, 32, 32)
    assert_close(seen, ref, atol=1 / 255 + 1e-6, rtol=0)
    square = build_vfm(tiny_vfm_params())
    assert torch.equal(square.masks_seen(mask), mask.float())  # square: the full frame, unchanged


def test_stage1_targets_cover_only_what_the_encoder_saw():
    from sara.data.supervision import supervision_units

    mask = torch.zeros(1, 4, 40, 56, dtype=torch.bool)
    mask[0, :, :, :8] = True  # only the left margin: outside the 32 x 32 centre crop of the 36 x 50 resized frame
    units = {}
    for resize in ("square", "short_side_crop"):
        vfm = build_vfm(tiny_vfm_params(resize=resize))
        units[resize] = supervision_units([("OBJECT_1", "a red box")], "a red box", "bg", "c", ["OBJECT_1"], mask,
                                          vfm.frame_indices(4), vfm.grid, seen=vfm.masks_seen)
    assert units["square"][0].target.max() > 0.2  # the square view keeps the margin
    assert units["short_side_crop"][0].target.max() == 0  # cropped away: no target where the encoder saw nothing
    assert units["short_side_crop"][-1].target.min() == 1  # so it is all background


def test_stride_sampling_takes_consecutive_frames_as_vjepa2_examples():
    import numpy as np

    assert sample_frame_indices(16, 4, "stride", 3).tolist() == np.arange(0, 4 * 3, 3).tolist()
    assert sample_frame_indices(16, 8, "stride", 1).tolist() == list(range(8))  # the examples' arange(0, n)
    assert sample_frame_indices(5, 4, "stride", 2).tolist() == [0, 2, 4, 4]  # short clip: last frame repeats
    with pytest.raises(ValueError, match="unknown vfm.frame_sampling 'random'"):
        sample_frame_indices(8, 4, "random")


@pytest.mark.parametrize("sampling,stride,want", [("bin_centres", 1, [1, 4, 7, 10]), ("stride", 2, [0, 2, 4, 6])])
def test_both_frame_samplings_on_a_tiny_model(sampling, stride, want):
    vfm = build_vfm(tiny_vfm_params(frame_sampling=sampling, frame_stride=stride))
    video = _video(b=1, f=12, seed=5)
    assert vfm.frame_indices(12).tolist() == want
    every_frame = build_vfm(tiny_vfm_params())  # same seeded weights; on a 4-frame clip it takes every frame
    assert_close(vfm.features(video), every_frame.features(video[:, want]), atol=0, rtol=0)  # exactly those frames


def test_the_view_is_part_of_the_encoder_identity():
    from sara.models.encoders import PREPROCESS_VERSION

    default = build_vfm(tiny_vfm_params())
    assert default.identity["preprocess"] == PREPROCESS_VERSION  # unchanged default: existing caches stay valid
    tags = {default.tag, build_vfm(tiny_vfm_params(resize="short_side_crop")).tag,
            build_vfm(tiny_vfm_params(frame_sampling="stride")).tag,
            build_vfm(tiny_vfm_params(frame_sampling="stride", frame_stride=2)).tag}
    assert len(tags) == 4


def test_stage2_refuses_a_view_that_does_not_cover_the_clip():
    from sara.models.video_view import require_full_clip_view

    require_full_clip_view("bin_centres", "square", "Stage 2 run 'sara-or'")
    with pytest.raises(ValueError, match=r"^Stage 2 run 'sara-or' needs the encoder to see the whole clip .*"
                                         r"got vfm.frame_sampling 'stride', vfm.resize 'square'"):
        require_full_clip_view("stride", "square", "Stage 2 run 'sara-or'")
