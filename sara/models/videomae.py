"""VideoMAE (transformers `VideoMAEModel` / `VideoMAEForPreTraining`): the lab scale's self-supervised video encoder.

VideoMAE v2 is the VFM family of VideoREPA and MoAlign. The lab scale pretrains a small one on the corpus
(sara.train.pretrain_vfm) and saves it with `save_pretrained`; `vfm.kind: videomae` then loads it, or real
VideoMAE weights, from `vfm.path` (sara.models.encoders.build_vfm). Tokens: tubelets of `tubelet_size` frames x
`patch_size`^2 pixels, grid (frames / tubelet, image_size / patch, image_size / patch), like the V-JEPA grid.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from sara.config import VFMParams, VFMPretrainParams

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def videomae_config(vfm: VFMParams, p: VFMPretrainParams) -> Any:
    """VideoMAEConfig for pretraining at the encoder input of `vfm` (frames, image_size, patch, tubelet)."""
    from transformers import VideoMAEConfig

    if vfm.image_size % vfm.patch_size:
        raise ValueError(f"vfm.image_size ({vfm.image_size}) must be a multiple of vfm.patch_size ({vfm.patch_size})")
    if vfm.frames % vfm.tubelet_size:
        raise ValueError(f"vfm.frames ({vfm.frames}) must be a multiple of vfm.tubelet_size ({vfm.tubelet_size})")
    if p.hidden_size % p.num_heads:
        raise ValueError(f"pretrain.vfm.hidden_size ({p.hidden_size}) must be a multiple of num_heads ({p.num_heads})")
    return VideoMAEConfig(
        image_size=vfm.image_size, patch_size=vfm.patch_size, num_channels=3, num_frames=vfm.frames,
        tubelet_size=vfm.tubelet_size, hidden_size=p.hidden_size, num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads, intermediate_size=4 * p.hidden_size,
        decoder_num_attention_heads=max(1, p.decoder_hidden_size // 32), decoder_hidden_size=p.decoder_hidden_size,
        decoder_num_hidden_layers=p.decoder_num_layers, decoder_intermediate_size=4 * p.decoder_hidden_size,
        use_mean_pooling=False,  # keep the encoder's final LayerNorm: its tokens are what the TRD target reads
        norm_pix_loss=p.norm_pix_loss,
    )


def tube_mask(batch: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """VideoMAE tube masking: (B, T*H*W) bool, the same `ratio` of spatial positions masked in every tubelet.

    Every sample masks the same number of tokens (VideoMAEForPreTraining needs that).
    """
    t, h, w = grid
    n_masked = int(round(ratio * h * w))
    if not 0 < n_masked < h * w:
        raise ValueError(f"mask ratio {ratio} masks {n_masked} of {h * w} positions: need at least one of each")
    order = torch.rand(batch, h * w, generator=generator).argsort(1)  # (B, H*W) random permutation
    spatial = torch.zeros(batch, h * w, dtype=torch.bool)
    spatial.scatter_(1, order[:, :n_masked], True)
    return spatial[:, None, :].expand(batch, t, h * w).reshape(batch, t * h * w)


def weights_digest(path: str | Path) -> str:
    """sha1 of a model directory's weight file (the cache tag of encoder features)."""
    path = Path(path)
    for name in WEIGHT_FILES:
        f = path / name
        if f.is_file():
            h = hashlib.sha1()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            return h.hexdigest()[:12]
    raise FileNotFoundError(f"{path}: no {' or '.join(WEIGHT_FILES)} (a VideoMAE model saved with save_pretrained)")


def load_videomae(path: str | Path, dtype: torch.dtype, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """`VideoMAEModel` from a local directory (a saved VideoMAEModel or VideoMAEForPreTraining: its encoder)."""
    from transformers import VideoMAEConfig, VideoMAEModel

    cfg = VideoMAEConfig.from_pretrained(path)
    if cfg.model_type != "videomae":
        raise ValueError(f"vfm.path = {str(path)!r} holds a {cfg.model_type!r} model, not videomae")
    return VideoMAEModel.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)


def check_input(model: torch.nn.Module, p: VFMParams, path: str | Path) -> None:
    """VideoMAE's fixed sinusoidal positions are laid out for config image_size and num_frames: they must match."""
    cfg = model.config
    if cfg.image_size != p.image_size or cfg.num_frames != p.frames:
        raise ValueError(f"vfm.image_size / vfm.frames = {p.image_size} / {p.frames}, but the VideoMAE model in "
                         f"{path} was built for {cfg.image_size} / {cfg.num_frames} (its positions are fixed)")
