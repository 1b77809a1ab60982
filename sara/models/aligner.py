"""The Stage 1 text-conditioned saliency aligner (the paper's Stage 1) and its loader for Stage 2.

    V'_y = Phi_CA(V_y, E~)          2 cross-attention blocks (visual queries, text keys/values), then 4 self-attention
                                    blocks, 8 heads, width D_v, no positional embedding
    M_p  = sigmoid(Phi_sal(V'_y))   MLP D_v -> 512 -> 1
    Z    = Phi_proj(V'_y)           RMSNorm + Linear D_v -> D_t, fed to the frozen E_lm as inputs_embeds

Block internals the paper leaves open (docs/aligner.md): pre-norm LayerNorm residual blocks with a GELU FFN
(`aligner.mlp_ratio`), no dropout; the CA keys/values are projected straight from the LayerNorm'd text embeddings
(D_t) to D_v; a learned "null" key/value is prepended to the text so a patch can attend to no word (this is the
extra entry in the ca-focus normaliser log(L+1) of Table 4); padded text tokens are masked out; self-attention is
joint over all T_s*H_s*W_s tokens. Phi_sal uses GELU and its output bias starts at logit(`aligner.sal_prior`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from sara.config import AlignerParams, Params
from sara.env import resolve_device
from sara.integrity import verify
from sara.io import load_tensors, reading, save_tensors
from sara.models.encoders import build_text_model, build_vfm

CHECKPOINT_NAME = "aligner.pt"


class Attention(nn.Module):
    """Multi-head attention: queries from `x` (dim), keys/values from `context` (kv_dim). Returns the output and,
    when asked, the attention probabilities (B, heads, Nq, Nk) for the diagnostics."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"aligner width {dim} (= VFM dim) must be a multiple of aligner.heads ({heads})")
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None = None,
                return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, nq, d = x.shape
        nk = context.shape[1]
        q = self.q(x).view(b, nq, self.heads, self.head_dim).transpose(1, 2)  # (B, h, Nq, hd)
        k, v = self.kv(context).view(b, nk, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 2x (B, h, Nk, hd)
        bias = None
        if key_mask is not None:  # (B, Nk) True = attend
            bias = torch.zeros(b, 1, 1, nk, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        if return_attn:
            logits = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, h, Nq, Nk)
            if bias is not None:
                logits = logits + bias
            attn = logits.softmax(-1)
            y = attn @ v  # (B, h, Nq, hd)
        else:
            attn = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, h, Nq, hd)
        y = y.transpose(1, 2).reshape(b, nq, d)  # (B, Nq, D)
        return self.out(y), attn


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ratio: float) -> None:
        hidden = max(1, int(round(dim * ratio)))
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class CrossAttentionBlock(nn.Module):
    """x + CA(LN(x), LN_t([null; E~])), then x + FFN(LN(x)). Visual queries, text keys/values."""

    def __init__(self, dim: int, text_dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(text_dim)
        self.attn = Attention(dim, heads, kv_dim=text_dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, attn = self.attn(self.norm_q(x), self.norm_kv(text), text_mask, return_attn)
        x = x + y
        return x + self.ff(self.norm_ff(x)), attn


class SelfAttentionBlock(nn.Module):
    """x + SA(LN(x)), then x + FFN(LN(x)); joint over all visual tokens, no positional embedding."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.norm(x)
        y, attn = self.attn(h, h, None, return_attn)
        x = x + y
        return x + self.ff(self.norm_ff(x)), attn


class RMSNorm(nn.Module):
    """RMSNorm with a learned gain (torch.nn.RMSNorm, kept as a named part of Phi_proj)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


@dataclass
class AlignerOutput:
    features: torch.Tensor  # V'_y (B, N_v, D_v)
    logits: torch.Tensor  # Phi_sal before the sigmoid (B, N_v)
    cross_attn: list[torch.Tensor] = field(default_factory=list)  # per CA block (B, heads, N_v, L+1)
    self_attn: list[torch.Tensor] = field(default_factory=list)  # per SA block (B, heads, N_v, N_v)

    @property
    def saliency(self) -> torch.Tensor:
        """M_p = sigmoid(Phi_sal(V'_y)), (B, N_v) in [0, 1]."""
        return torch.sigmoid(self.logits)


class SaliencyAligner(nn.Module):
    """Phi_CA + Phi_sal + Phi_proj: the only trainable part of Stage 1."""

    def __init__(self, vfm_dim: int, text_dim: int, p: AlignerParams) -> None:
        super().__init__()
        self.vfm_dim, self.text_dim = vfm_dim, text_dim
        self.grad_checkpointing = p.grad_checkpointing
        self.null_token = nn.Parameter(torch.zeros(1, 1, text_dim))  # the "+1" key: attend to no word
        nn.init.normal_(self.null_token, std=0.02)
        self.cross_blocks = nn.ModuleList(
            CrossAttentionBlock(vfm_dim, text_dim, p.heads, p.mlp_ratio) for _ in range(p.n_cross))
        self.self_blocks = nn.ModuleList(SelfAttentionBlock(vfm_dim, p.heads, p.mlp_ratio) for _ in range(p.n_self))
        self.sal_head = nn.Sequential(nn.LayerNorm(vfm_dim), nn.Linear(vfm_dim, p.sal_hidden), nn.GELU(),
                                      nn.Linear(p.sal_hidden, 1))  # Phi_sal
        nn.init.constant_(self.sal_head[-1].bias, math.log(p.sal_prior / (1.0 - p.sal_prior)))
        self.proj = nn.Sequential(RMSNorm(vfm_dim), nn.Linear(vfm_dim, text_dim))  # Phi_proj

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                return_attn: bool = False) -> AlignerOutput:
        """Phi_CA then Phi_sal. visual (B, N_v, D_v) = V_y; text (B, L, D_t) = E_emb(caption); text_mask (B, L)."""
        if visual.ndim == 4:
            visual = visual.flatten(1, 2)  # (B, T_s*N_s, D_v)
        b = visual.shape[0]
        null = self.null_token.expand(b, 1, self.text_dim).to(text.dtype)
        ctx = torch.cat([null, text], 1)  # (B, L+1, D_t)
        ctx_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=text_mask.device), text_mask.bool()], 1)
        x = visual
        cross, selfs = [], []
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled() and not return_attn
        for blk in self.cross_blocks:
            if use_ckpt:
                x, a = checkpoint(blk, x, ctx, ctx_mask, False, use_reentrant=False)
            else:
                x, a = blk(x, ctx, ctx_mask, return_attn)
            if a is not None:
                cross.append(a)
        for blk in self.self_blocks:
            if use_ckpt:
                x, a = checkpoint(blk, x, False, use_reentrant=False)
            else:
                x, a = blk(x, return_attn)
            if a is not None:
                selfs.append(a)
        logits = self.sal_head(x).squeeze(-1)  # (B, N_v)
        return AlignerOutput(features=x, logits=logits, cross_attn=cross, self_attn=selfs)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Phi_proj: V'_y (B, N, D_v) -> Z (B, N, D_t), the inputs_embeds of E_lm."""
        return self.proj(features)


def pool_visual_tokens(z: torch.Tensor, grid: tuple[int, int, int], factor: int) -> torch.Tensor:
    """Average-pool the visual sequence per frame by `factor` in H and W before E_lm (aligner.nce_pool).

    (B, T_s*H_s*W_s, D) -> (B, T_s*ceil(H_s/f)*ceil(W_s/f), D); factor 1 keeps every token."""
    if factor == 1:
        return z
    b, _, d = z.shape
    t, h, w = grid
    x = z.reshape(b * t, h, w, d).permute(0, 3, 1, 2)  # (B*T, D, H, W)
    x = F.avg_pool2d(x, factor, ceil_mode=True)  # (B*T, D, H', W')
    return x.permute(0, 2, 3, 1).reshape(b, -1, d)  # (B, T*H'*W', D)


# ----------------------------------------------------------------------------------------------------------------
# save / load


def save_aligner(path: str | Path, aligner: SaliencyAligner, params: Params, extra: dict[str, Any]) -> Path:
    """Write `aligner.pt`: the state dict, the params it was built with and `extra` (encoder tags, dims, tiny VFM
    weights). Written to a temp name then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": aligner.state_dict(), "params": params.model_dump(mode="json"),
               "vfm_dim": aligner.vfm_dim, "text_dim": aligner.text_dim, **extra}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_tensors(payload, tmp)
    os.replace(tmp, path)
    return path


def load_aligner(path: str | Path, device: str | torch.device = "cpu") -> tuple[SaliencyAligner, dict[str, Any]]:
    """Rebuild a saved aligner from its own stored params; returns (aligner in eval mode, payload)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no trained aligner at {path}: run `sara train-aligner` (dvc repro train_aligner)")
    verify(path.parent)  # a damaged workspace file or cache object is refused before it is read
    fix = "restore it (`dvc checkout --relink`) or rerun train_aligner"
    payload = load_tensors(path, fix)  # tensors and plain containers, never code
    with reading(path, fix):
        stored = Params.model_validate(payload["params"])
    aligner = SaliencyAligner(payload["vfm_dim"], payload["text_dim"], stored.aligner)
    aligner.load_state_dict(payload["state_dict"])
    return aligner.to(device).eval(), payload


class SaliencyModel:
    """Frozen aligner + frozen encoders: w = M_p(x_0, c) for Stage 2 (as in the paper). Everything under no_grad."""

    def __init__(self, aligner: SaliencyAligner, vfm: Any, text: Any) -> None:
        self.aligner, self.vfm, self.text = aligner, vfm, text

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.vfm.grid

    @torch.no_grad()
    def saliency(self, video: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """w (B, T_s, H_s*W_s) in [0, 1] from uint8 frames (B, F, H, W, 3) or precomputed V_y (B, T_s, N_s, D_v)
        and one caption per sample (the full caption c in Stage 2)."""
        video = torch.as_tensor(video)
        if len(captions) != video.shape[0]:
            raise ValueError(f"got {len(captions)} captions for a batch of {video.shape[0]} clips")
        if video.dtype == torch.uint8:
            feats = self.vfm.features(video)  # (B, T_s, N_s, D_v)
        else:
            t, h, w = self.vfm.grid
            if tuple(video.shape[1:]) != (t, h * w, self.vfm.dim):
                raise ValueError(f"features must be (B, {t}, {h * w}, {self.vfm.dim}) for this encoder, "
                                 f"got {tuple(video.shape)}")
            feats = video
        dev = next(self.aligner.parameters()).device
        tokens, mask = self.text.embed(list(captions))
        out = self.aligner(feats.to(dev).float(), tokens.to(dev), mask.to(dev))
        t, h, w = self.vfm.grid
        return out.saliency.float().reshape(feats.shape[0], t, h * w)  # (B, T_s, N_s)


def load_saliency_model(aligner_dir: str | Path, params: Params, device: str | torch.device = "cpu") -> SaliencyModel:
    """Load a trained aligner with the frozen encoders it was trained with; Stage 2 calls this.

    The encoders are built from `params.vfm` / `params.text` (so local weight paths may differ per machine) and
    must match the checkpoint: same encoder tag (architecture + preprocessing) and the same widths. A tiny random
    V-JEPA is restored from the weights stored in the checkpoint."""
    device = resolve_device(device)
    aligner, payload = load_aligner(aligner_dir, device)
    vfm = build_vfm(params.vfm, device)
    if payload.get("vfm_state") is not None and vfm.kind == "tiny":
        vfm.load_weights(payload["vfm_state"])
    if vfm.tag != payload.get("vfm_tag"):
        raise ValueError(f"params.vfm builds encoder {vfm.tag}, but the aligner in {aligner_dir} was trained on "
                         f"{payload.get('vfm_tag')}: use the vfm params it was trained with")
    text = build_text_model(params.text, device)
    if text.dim != aligner.text_dim or vfm.dim != aligner.vfm_dim:
        raise ValueError(f"encoder widths (vfm {vfm.dim}, text {text.dim}) do not match the aligner in {aligner_dir} "
                         f"(vfm {aligner.vfm_dim}, text {aligner.text_dim})")
    return SaliencyModel(aligner, vfm, text)
