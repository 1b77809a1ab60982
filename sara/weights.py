"""Local weight directories: every real model loads from a directory named in params, never from the network.

`require_dir` returns an existing directory or raises one `MissingWeightsError` line naming the param, the path and
what belongs there; `check_local_weights` applies it, before any work, to every directory the given params sections
(or single keys of them) need.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import DiTParams, Params
from sara.errors import MissingWeightsError


def require_dir(param: str, value: str | None, what: str) -> Path:
    """Return an existing local weights directory or raise one clear error naming the param and path.

    Nothing is ever downloaded: real models load from directories named in params.
    """
    if not value:
        raise MissingWeightsError(f"{param} is not set: it must name a local directory containing {what}")
    p = Path(value).expanduser()
    if not p.is_dir():
        raise MissingWeightsError(f"{param} = {value!r} does not exist: it must be a local directory containing {what}")
    return p


def dit_weight_dirs(dit: DiTParams, two_experts: bool) -> list[tuple[str, str | None, str]]:
    """(param, value, contents) of the local Wan directories of `dit`: the trained transformer, the frozen low-noise
    expert of a two-expert model (Wan2.2-T2V-A14B; none for Wan2.1-T2V-1.3B or Wan2.2-TI2V-5B), the VAE, UMT5."""
    trained = "the Wan2.2 high-noise expert" if two_experts else "the Wan transformer (a single-expert model)"
    out = [("dit.path", dit.path, f"{trained} in diffusers format (config.json + safetensors)")]
    if two_experts:
        out.append(("dit.low_noise_path", dit.low_noise_path, "the Wan2.2 low-noise expert in diffusers format"))
    return out + [("dit.vae_path", dit.vae_path, "the Wan AutoencoderKLWan in diffusers format"),
                  ("dit.text_encoder_path", dit.text_encoder_path, "a UMT5 encoder")]


def local_weight_dirs(params: Params, sections: list[str]) -> list[tuple[str, str | None, str]]:
    """(param, value, contents) of every local weights directory that the given params sections need."""
    out: list[tuple[str, str | None, str]] = []
    if params.dit.kind == "local":
        d, wanted = params.dit, lambda key: "dit" in sections or key in sections  # the section or single keys
        out += [x for x in dit_weight_dirs(d, two_experts=d.low_noise_path is not None) if wanted(x[0])]
    if "vfm" in sections and params.vfm.kind == "local":
        out.append(("vfm.path", params.vfm.path, "a V-JEPA 2 / 2.1 model in transformers format"))
    if "text" in sections and params.text.kind == "qwen3vl_embedding":
        out.append(("text.path", params.text.path, "Qwen3-VL-Embedding in transformers format"))
    if "masks" in sections and params.masks.backend == "sam3":
        out.append(("masks.sam3_dir", params.masks.sam3_dir, "a transformers-format SAM 3 video model"))
    return out


def check_local_weights(params: Params, sections: list[str]) -> None:
    """Refuse, before any work, a params key that names missing local weights (one line: the key and the path)."""
    for param, value, what in local_weight_dirs(params, sections):
        require_dir(param, value, what)
