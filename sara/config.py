"""Typed, strict, frozen parameters: one pydantic model per params.yaml section.

`load_params(path)` validates the whole file before any work starts. Unknown keys, wrong types and
out-of-range values are refused with the dotted key path (`aligner.lr: must be > 0`), so a typo never
silently falls back to a default. Every field carries a short comment saying why it exists.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sara.errors import InputError
from sara.runs import BASE, DAG_RUNS, MAIN_RUN, ORACLE, Run
# the base classes and the lab's pretraining sections live beside this module; they are imported from here too
from sara.params_base import (PromptSetName, SceneParams, Section, StrictModel, WanFrames,  # noqa: F401 (re-exported)
                              ZeroStage)
from sara.params_lab import (CorpusParams, DiTPretrainParams, PretrainParams, VAEPretrainParams,  # noqa: F401
                             VFMPretrainParams)


class ProjectParams(Section):
    scale: Literal["embedded", "gpu", "lab", "paper"] = "embedded"  # which size produced an output; lab = pretrain here
    seed: int = Field(1024, ge=0)  # global seed (Table 11 uses 1024)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    # deterministic kernels in every stage process (sara.env.deterministic_kernels): the same command then gives the
    # same models on one GPU kind; off by default (docs/lab/replicates.md: two lab runs of one command disagreed)
    deterministic: bool = False
    mlflow_experiment: str = Field("sara", min_length=1)  # MLflow experiment every stage logs into


class DataParams(SceneParams):
    source: Literal["synthetic", "folder"] = "synthetic"  # synthetic renderer, or a folder of real clips
    folder: str | None = None  # real clips (one folder per clip, same layout as the renderer writes)
    out_dir: str = "data/clips"  # where the data stage writes clip folders and index.json
    n_train: int = Field(24, ge=1)  # synthetic training clips
    n_heldout: int = Field(8, ge=1)  # synthetic held-out clips (Stage 1 diagnostics, evaluation)
    frames: int = Field(16, ge=2)  # frames per clip
    pixel_format: Literal["yuv444p", "yuv420p"] = "yuv444p"  # mp4 colour sampling; 4:4:4 keeps 64 px edges sharp
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _source(self) -> "DataParams":
        if self.pixel_format == "yuv420p" and (self.height % 2 or self.width % 2):
            raise ValueError("height and width must be even for pixel_format yuv420p")
        if self.source == "folder" and not self.folder:
            raise ValueError("folder: required when source is 'folder'")
        return self


class MasksParams(Section):
    backend: Literal["groundtruth", "sam3"] = "groundtruth"  # synthetic ground truth, or SAM 3 from local weights
    sam3_dir: str | None = None  # local transformers-format SAM 3 video model directory (backend sam3)
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)  # SAM 3 detection score kept as an entity mask
    mask_threshold: float = Field(0.5, gt=0.0, lt=1.0)  # SAM 3 mask probability -> binary (0.5: the processor's own)
    budget_grid: list[int] = [4, 8, 8]  # (T_s, H_s, W_s) token grid of the p_fg / pair-budget statistic (V-JEPA grid)
    out_dir: str = "data/masks"

    @field_validator("budget_grid")
    @classmethod
    def _grid(cls, v: list[int]) -> list[int]:
        if len(v) != 3 or min(v) < 1:
            raise ValueError("must be three positive sizes [T_s, H_s, W_s]")
        return v


class VFMParams(Section):
    kind: Literal["tiny", "local", "videomae"] = "tiny"  # tiny random-init VJEPA2Model, V-JEPA 2/2.1 or VideoMAE from `path`
    path: str | None = None  # local transformers-format V-JEPA (kind local) or VideoMAE (kind videomae) directory
    frames: int = Field(8, ge=2)  # frames fed to the encoder (taken by `frame_sampling`)
    # which frames: bin_centres = n frames at the centres of n equal bins (span the whole clip; Stage 2 needs it);
    # stride = n consecutive frames `frame_stride` apart from frame 0, as V-JEPA 2's examples (docs/aligner.md)
    frame_sampling: Literal["bin_centres", "stride"] = "bin_centres"
    frame_stride: int = Field(1, ge=1)  # frame_sampling stride only: step between the sampled frames (1 = consecutive)
    # which pixels: square = whole frame resized to image_size^2, no crop (masks map exactly; Stage 2 needs it);
    # short_side_crop = the official video processor: short side to image_size*256/224, centre crop (masks cropped too)
    resize: Literal["square", "short_side_crop"] = "square"
    image_size: int = Field(64, ge=16)  # square encoder input (paper: 384)
    patch_size: int = Field(8, ge=1)  # tiny config only (8 -> an 8x8 grid per 64x64 frame); local: config.json
    tubelet_size: int = Field(2, ge=1)
    hidden_size: int = Field(64, ge=8)  # tiny config only (paper ViT-G: 1664)
    num_layers: int = Field(2, ge=1)  # tiny config only
    num_heads: int = Field(4, ge=1)  # tiny config only
    seed: int = Field(0, ge=0)  # tiny config only: seeds the random init (the weights are also stored with the aligner)
    cache_dir: str = "data/features"  # V-JEPA features cached per clip and encoder, reused by Stage 2


class TextParams(Section):
    kind: Literal["minilm", "qwen3vl_embedding"] = "minilm"  # embedded MiniLM, or Qwen3-VL-Embedding from `path`
    path: str | None = None  # local Qwen3-VL-Embedding directory (kind qwen3vl_embedding)
    max_tokens: int = Field(256, ge=8)  # caption token cap (paper: 2048)
    pooling: Literal["auto", "mean", "last"] = "auto"  # E_lm pooling; auto = mean for MiniLM, last token for Qwen
    instruction: str = "Represent the user's input."  # Qwen3-VL-Embedding system instruction (chat template)


class AlignerParams(Section):
    heads: int = Field(8, ge=1)  # Phi_CA attention heads (paper: 8)
    n_cross: int = Field(2, ge=0)  # cross-attention blocks (paper: 2)
    n_self: int = Field(4, ge=0)  # self-attention blocks (paper: 4)
    mlp_ratio: float = Field(4.0, gt=0)  # FFN width inside Phi_CA blocks (paper: open)
    sal_hidden: int = Field(512, ge=1)  # Phi_sal hidden width (paper: 512)
    lam_bce: float = Field(1.0, ge=0)
    lam_nce: float = Field(1.0, ge=0)
    tau_nce: float = Field(0.07, gt=0)
    use_infonce: bool = True  # ablation "w/o InfoNCE"
    entity_separated: bool = True  # ablation "w/o entity-separated": one full-caption / union-mask forward
    mask_threshold: float | None = Field(None, ge=0.0, le=1.0)  # None = soft BCE targets after resampling
    sal_prior: float = Field(0.4, gt=0.0, lt=1.0)  # Phi_sal output bias starts at logit(prior) (paper: open)
    nce_pool: int = Field(4, ge=1)  # per-frame spatial avg-pool of the visual sequence fed to E_lm (1 = all tokens)
    max_entities: int | None = Field(None, ge=1)  # random subset of entity forwards per clip and step (None = all K)
    steps: int = Field(100, ge=1)  # embedded default: proves the plumbing (lab: 400)
    clips_per_batch: int = Field(4, ge=1)  # a batch holds whole clips: all K+2 forwards of each
    lr: float = Field(1e-3, gt=0)  # peak lr (paper: 5e-5 at batch 64)
    min_lr: float = Field(1e-6, ge=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    grad_checkpointing: bool = False  # Phi_CA blocks and the frozen E_lm (paper: on)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    checkpoint_every: int = Field(100, ge=1)  # train state for resume, in aligner.work_dir
    seed: int = Field(0, ge=0)
    figure_clips: int = Field(2, ge=0)  # held-out clips drawn as Fig. 3 / Fig. 4 style figures
    work_dir: str = "tmp/aligner_train"  # resumable train state (git-ignored, survives DVC removing out_dir)
    out_dir: str = "models/aligner"
    eval_dir: str = "outputs/aligner"  # metrics.json (DVC metrics) and figures/

    @model_validator(mode="after")
    def _lr_order(self) -> "AlignerParams":
        if self.min_lr > self.lr:
            raise ValueError("min_lr must be <= lr")
        return self


class TRDParams(Section):
    layer: int = Field(1, ge=1)  # aligned DiT depth, 1-based: output of transformer.blocks[layer-1] (paper: 18 of 40)
    lam_trd: float = Field(0.5, ge=0)  # weight of the auxiliary loss (paper: 0.5)
    lam_tmp: float = Field(1.0, ge=0)  # weight of the cross-frame term (paper: 1.0)
    eps: float = Field(1e-6, gt=0)
    tau: float = Field(math.inf, gt=0, allow_inf_nan=True)  # temporal decay; inf = uniform cross-frame weights
    mask_temporal: bool = True  # ablation "w/o temporal mask"
    projector_hidden: int = Field(256, ge=1)  # REPA projector MLP width (paper: open; REPA uses 2048)
    grid_mode: Literal["trilinear", "area"] = "trilinear"  # DiT grid -> VFM grid interpolation


class DiTParams(Section):
    kind: Literal["tiny", "local"] = "tiny"  # tiny random-init WanTransformer3DModel, or a local diffusers dir
    path: str | None = None  # Wan2.2 high-noise expert (diffusers format) for kind local
    # frozen low-noise expert for sampling (kind local); None = a single-expert model (Wan2.1-T2V-1.3B,
    # Wan2.2-TI2V-5B): the trained transformer denoises every step and sample.boundary_ratio must be null
    low_noise_path: str | None = None
    vae_path: str | None = None  # AutoencoderKLWan directory (kind local)
    text_encoder_path: str | None = None  # UMT5 directory (kind local); tiny: a MiniLM copy (None: the packaged one)
    num_layers: int = Field(2, ge=1)  # tiny config only
    num_heads: int = Field(2, ge=1)  # tiny config only
    head_dim: int = Field(16, ge=1)  # tiny config only
    frames: WanFrames = Field(9, ge=1)  # training clip frames (4k+1 for the Wan VAE)
    height: int = Field(64, ge=16)
    width: int = Field(64, ge=16)
    patch_size: list[int] = [1, 2, 2]  # tiny config only: (t, h, w) latent patch (Wan: 1x2x2)
    ffn_mult: int = Field(2, ge=1)  # tiny config only: FFN width = ffn_mult * num_heads * head_dim
    text_max_tokens: int = Field(64, ge=8)  # prompt tokens given to the DiT (paper UMT5: 512; lab MiniLM: 512)
    init_seed: int = Field(1024, ge=0)  # tiny config only: seeds the random init of the base model (init_dit)
    base_dir: str = "models/base"  # written by init_dit: the starting point of every method


    @field_validator("patch_size")
    @classmethod
    def _patch(cls, v: list[int]) -> list[int]:
        if len(v) != 3 or min(v) < 1:
            raise ValueError("must be three positive sizes [t, h, w]")
        return v


class ValidationParams(Section):
    """Validation videos during Stage 2 (sara.train.validation): every `every` steps the first `prompts` prompts of
    `prompt_set` are sampled with the current weights at the training clip size (dit.frames/height/width, data.fps)
    and logged to the run's MLflow run, with grounded TA / MQ scores where the prompt has ground truth (synthetic).
    Its own settings, not `sample`'s: a sampling change must not retrain the Stage 2 runs."""

    # 0 = off. Cost per validation: prompts x steps x (2 with CFG) DiT forwards + one VAE decode per video, against
    # about 4 forwards per training step (forward, checkpoint recompute, backward); docs/stage2.md
    every: int = Field(0, ge=0)
    prompt_set: Literal["synthetic", "realworld"] = "synthetic"  # synthetic prompts carry ground truth
    prompts: int = Field(2, ge=1, le=18)  # the first k prompts of the set (18 per set)
    seed: int = Field(0, ge=0)  # one video per prompt, the same noise at every validation
    steps: int = Field(4, ge=1)  # UniPC denoising steps
    guidance: float = Field(1.0, ge=1.0)  # CFG scale; 1.0 = no unconditional pass (half the forwards)
    shift: float = Field(5.0, gt=0)  # Wan timestep shift of the sampling schedule
    # None: the trained transformer denoises every step (single-expert models; nothing else is loaded). A value:
    # timesteps below boundary_ratio * 1000 use the base's frozen low-noise expert, loaded next to the training state
    boundary_ratio: float | None = Field(None, gt=0.0, lt=1.0)


class TrainParams(Section):
    steps: int = Field(100, ge=1)  # embedded default: proves the plumbing (paper: 3000)
    lr: float = Field(1e-4, gt=0)  # paper: 5e-6, constant after warmup
    warmup_steps: int = Field(20, ge=0)  # paper: 500
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    batch_size: int = Field(1, ge=1)  # per GPU (paper: 1)
    # deepspeed: the paper's engine (ZeRO stage below, any number of ranks); torch: one process without DeepSpeed,
    # same numerics (sara/train/single_engine.py), for one-GPU runs whose step is bound by the engine's small kernels
    engine: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: ZeroStage = 2
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 on CUDA, fp32 on CPU
    grad_checkpointing: bool = False
    # torch.compile the DiT's forward on CUDA (ignored on CPU): the lab's Stage 2 step is many small kernels
    # (benchmarks/stage2_step.md); the first step pays the compile
    compile: bool = False
    checkpoint_every: int = Field(100, ge=1)
    # Timestep band [t_min, t_max] (fractions of 1000). Paper: 0.875-1.0, the band the high-noise expert serves.
    # Single-expert model (dit.low_noise_path null): 0.0-1.0, because that one model denoises every step and a
    # high-noise-only fine-tune would move the weights the low-noise steps share with no loss on them (docs/stage2.md)
    t_min: float = Field(0.875, ge=0.0, lt=1.0)
    t_max: float = Field(1.0, gt=0.0, le=1.0)
    logit_mean: float = 0.0
    logit_std: float = Field(1.0, gt=0)
    shift: float = Field(12.0, gt=0)  # timestep shift (paper: 12.0)
    seed: int = Field(1024, ge=0)  # Stage 2 only: data order, noise, timesteps, caption dropout
    caption_dropout: float = Field(0.0, ge=0.0, le=1.0)  # chance a caption is replaced by "" (CFG; paper: open)
    feature_cache: bool = False  # read V-JEPA features of clean clips from vfm.cache_dir (else computed online)
    cache_frozen_inputs: bool = False  # encode each clip's VAE latent and caption once per run, not every step
    log_every: int = Field(1, ge=1)  # MLflow metrics every k steps
    keep_checkpoints: int = Field(2, ge=1)  # newest resumable checkpoints kept per run
    state_dir: str = "models/dit_state"  # resumable DeepSpeed state per run (git-ignored scratch, not a DVC output)
    out_dir: str = "models/dit"  # final model per run: <out_dir>/<run>/transformer, aux.pt, metrics.json
    # ZeRO-Offload: "optimizer" keeps the fp32 master weights and AdamW states in CPU memory (needs zero_stage >= 1;
    # what fits a 5B DiT on one 80 GB card), "all" also the bf16 weights (zero_stage 3); docs/stage2.md
    offload: Literal["none", "optimizer", "all"] = "none"
    validation: ValidationParams = ValidationParams()

    @model_validator(mode="after")
    def _band(self) -> "TrainParams":
        if self.t_min >= self.t_max:
            raise ValueError("t_min must be < t_max")
        if self.offload == "optimizer" and self.zero_stage < 1:
            raise ValueError("offload 'optimizer' needs zero_stage >= 1 (DeepSpeed offloads the partitioned states)")
        if self.offload == "all" and self.zero_stage != 3:
            raise ValueError("offload 'all' needs zero_stage 3 (only ZeRO-3 partitions the weights)")
        if self.engine == "torch" and self.offload != "none":
            raise ValueError(f"offload {self.offload!r} needs engine 'deepspeed' (ZeRO-Offload is DeepSpeed's)")
        return self


class VideoREPAParams(Section):
    form: Literal["eq2", "hinge"] = "eq2"  # eq2 = Eq. 2 (masked TRD with op none); hinge = original VideoREPA
    margin: float = Field(0.1, ge=0)  # hinge margin of the original VideoREPA form


class MoAlignParams(Section):
    dim: int = Field(64, ge=1)  # motion subspace width D_m
    tau: float = Field(10.0, gt=0)  # temporal decay on the cross-frame term
    flow: Literal["groundtruth", "farneback", "raft"] = "groundtruth"  # optical-flow source
    raft_dir: str | None = None  # local RAFT weights (flow raft)
    flow_weight: float = Field(1.0, ge=0)  # weight of the flow-decoder L1 loss


class MethodsParams(Section):
    """Method-specific settings, one subsection per method, so a change retrains only that method. Which runs the
    pipeline trains (methods, SARA's routing operators, TRD targets) is `matrix.runs`."""

    videorepa: VideoREPAParams = VideoREPAParams()
    moalign: MoAlignParams = MoAlignParams()


class MatrixParams(Section):
    """The run matrix: the Stage 2 runs the DAG trains, samples, judges, reads out and compares.

    No stage reads it: `python -m sara.pipeline` writes dvc.yaml from it (one `train_dit-<run>` ... per run), so
    changing the matrix adds or drops stages and never makes a kept run stale. After editing it (or copying
    another params file over params.yaml), rerun `python -m sara.pipeline`; `sara repro` refuses a stale dvc.yaml."""

    runs: list[str] = Field([r.name for r in DAG_RUNS], min_length=1)  # run names of sara/runs.py, e.g. sara-or@oracle

    @field_validator("runs")
    @classmethod
    def _runs(cls, v: list[str]) -> list[str]:
        names = [Run.parse(name).name for name in v]  # an unknown name is refused with the valid forms
        if len(set(names)) != len(names):
            raise ValueError(f"{sorted(n for n in names if names.count(n) > 1)[0]!r} is listed twice")
        return v


class SampleParams(Section):
    steps: int = Field(4, ge=1)  # denoising steps (Wan2.2: 40)
    scheduler: Literal["unipc", "euler"] = "unipc"  # flow-matching solver (Wan2.2 samples with UniPC)
    shift: float = Field(12.0, gt=0)  # Wan timestep shift of the sampling schedule (Wan2.2 T2V-A14B: 12.0)
    guidance: float = Field(1.0, ge=1.0)  # CFG scale of the high-noise expert; 1.0 = no CFG pass (Wan2.2: 4.0)
    guidance_2: float | None = Field(None, ge=1.0)  # CFG scale of the low-noise expert; None = guidance (Wan2.2: 3.0)
    negative_prompt: str = ""
    seeds: list[int] = Field([0], min_length=1)  # one video per prompt and seed
    videos_per_call: int | None = Field(None, ge=1)  # pipeline batch over prompts x seeds (None: one prompt's seeds)
    frames: WanFrames = Field(9, ge=1)  # 4k+1 for the Wan VAE
    height: int = Field(64, ge=16)
    width: int = Field(64, ge=16)
    fps: int = Field(8, ge=1)
    # switch from the high- to the low-noise expert; None = single expert: the run's transformer samples every step
    # (Wan2.1-T2V-1.3B, Wan2.2-TI2V-5B; required when dit.low_noise_path is null at kind local)
    boundary_ratio: float | None = Field(0.875, gt=0.0, lt=1.0)
    prompt_set: PromptSetName = "synthetic"  # what is sampled and judged (lab: the 18 synthetic + 256 held-out)
    vbench_prompts: str | None = None  # VBench-1.0 suite (VBench_full_info.json or one prompt per line); None = skip
    vbench2_prompts: str | None = None  # VBench-2.0 suite, same formats; None = skip
    vbench_videos_per_prompt: int = Field(5, ge=1)  # VBench-1.0 standard: 5 (VBench-2.0: 3, Diversity 20)
    out_dir: str = "outputs/samples"


class JudgeParams(Section):
    name: str = Field(min_length=1)  # column label in the outputs (e.g. qwen3.5-27b)
    backend: Literal["openai", "transformers"] = "openai"
    base_url: str | None = None  # OpenAI-compatible endpoint (vLLM), backend openai
    model: str | None = None  # served model name (openai) or local model directory (transformers)
    api_key_env: str | None = None  # name of the environment variable holding the API key, if the server wants one
    media: Literal["frames", "video"] = "frames"  # frames as JPEG images, or the mp4 as one video part
    thinking: bool = True  # chat_template_kwargs.enable_thinking (paper: on, 8K thinking budget)
    max_frames: int = Field(16, ge=1)  # frames sent per video (media frames)
    max_tokens: int = Field(10240, ge=16)  # thinking budget + the JSON answer
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)  # paper: 20 for Qwen3.x, 64 for Gemma-4
    min_p: float | None = Field(None, ge=0, le=1)  # paper: 0 for Qwen3.x
    presence_penalty: float | None = None  # paper: 1.5 for Qwen3.x
    timeout_s: float = Field(600.0, gt=0)  # per request


class RubricParams(Section):
    grounded: bool = True  # score synthetic prompts with the ground-truth judge (no model needed)
    judges: list[JudgeParams] = []  # VLM judges; empty = grounded judge only (paper: three judges)
    retries: int = Field(3, ge=0)  # extra attempts for a failed request or an unparseable / incomplete reply
    backoff_s: float = Field(2.0, ge=0)  # first retry delay of a failed request; doubles each retry
    out_dir: str = "outputs/rubric"

    @field_validator("judges")
    @classmethod
    def _unique_judges(cls, v: list[JudgeParams]) -> list[JudgeParams]:
        names = [j.name for j in v]
        if len(set(names)) != len(names):
            raise ValueError(f"judge names must be unique, got {names}")
        return v


class VBenchParams(Section):
    enabled: bool = True
    venv: str = ".venv-vbench"  # isolated environment created on demand
    cache_dir: str | None = None  # VBENCH_CACHE_DIR with the models; None = weight-free dimensions only
    dimensions: list[str] = ["temporal_flickering"]  # VBench-1.0 dimensions to run (missing weights: reported missing)
    # VBench (standard) or VBench-Long (splits each video into clips first); auto = VBench's rule on the sampled
    # clips' length sample.frames / sample.fps: >= 5 s -> long (Wan2.2's 81 frames at 16 fps: 5.06 s), else standard
    mode: Literal["auto", "standard", "long"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    vbench2_dir: str | None = None  # VBench-2.0 source checkout (its VBench-2.0/ folder); None = VBench-2.0 off
    vbench2_python: str | None = None  # python of the VBench-2.0 environment
    vbench2_dimensions: list[str] = []  # VBench-2.0 dimensions to run (e.g. Human_Anatomy ...)
    out_dir: str = "outputs/vbench"


class ClipScoreParams(Section):
    enabled: bool = False  # off by default: no CLIP weights are shipped (disabled: metrics.json says so, no numbers)
    model: str = Field("ViT-B-32", min_length=1)  # open_clip architecture name of the checkpoint
    checkpoint: str | None = None  # local open_clip state-dict file (.pt/.pth/.bin/.safetensors); never downloaded
    frames: int = Field(8, ge=1)  # frames per video, uniformly sampled (first and last included)
    out_dir: str = "outputs/clipscore"  # scores.csv (per video) and metrics.json (per run)


class ComparisonParams(Section):
    """`sara compare`: the controlled comparison of the Stage 2 runs with bootstrap intervals (evaluation/comparison/)."""

    runs: list[str] | None = None  # rows, in this order; None = every run with rubric scores (a listed run must exist)
    references: list[str] = ["sft", "videorepa"]  # paired differences of every run against each of these
    protocol: Literal["grounded", "vlm"] = "grounded"  # which rubric scores (never mixed)
    n_boot: int = Field(2000, ge=100)  # bootstrap replicates
    level: float = Field(0.95, gt=0.0, lt=1.0)  # confidence level of every interval
    scheme: Literal["prompt", "prompt_seed", "video"] = "prompt"  # resampling unit (evaluation/statistics.py)
    seed: int = Field(0, ge=0)  # seed of the bootstrap draw (one draw shared by every run: paired)
    grid_frames: int = Field(8, ge=1)  # frames per method row of the qualitative grid
    grid_prompt_set: PromptSetName | None = None  # qualitative grids for this set's prompts only; None = every prompt
    mechanism_dir: str | None = None  # readouts shown in comparison.md; None = mechanism.out_dir (the DAG's)
    # primary claims, written here before the runs are trained (pre-registered): `<run> > <run> on TA|MQ`
    # (sara/claims.py), tested as one family with Holm-Bonferroni at 1 - level; every other ordering is exploratory
    claims: list[str] = []
    out_dir: str = "outputs/comparison"

    @field_validator("claims")
    @classmethod
    def _claims(cls, v: list[str]) -> list[str]:
        from sara.claims import parse_claim  # the claim vocabulary (it reads the run registry, which imports this)

        texts = [parse_claim(c).text for c in v]
        if len(set(texts)) != len(texts):
            raise ValueError(f"a claim is listed twice: {sorted(t for t in texts if texts.count(t) > 1)[0]!r}")
        return v


class MechanismParams(Section):
    """`sara mechanism --run <run>`: relational error of the DiT's hook-layer tokens on held-out clips."""

    split: Literal["train", "heldout"] = "heldout"  # clips of `data.out_dir` (ground-truth FG masks needed)
    clips: int = Field(8, ge=1)  # the first k clips of the split
    sigmas: list[float] = Field([0.9, 0.97], min_length=1)  # noise levels the DiT reads the clip at (Stage 2 band)
    noise_seed: int = Field(0, ge=0)  # the same noise for every run, so runs differ only in their weights
    n_boot: int = Field(1000, ge=100)  # bootstrap over clips for the intervals
    level: float = Field(0.95, gt=0.0, lt=1.0)
    out_dir: str = "outputs/mechanism"  # <out_dir>/<run>.json

    @field_validator("sigmas")
    @classmethod
    def _sigmas(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < s <= 1.0 for s in v):
            raise ValueError("every sigma must be in (0, 1]")
        return v


class ReportParams(Section):
    main_run: str = MAIN_RUN.name  # the run shown as "SARA" in Tables 1, 2, 5 and 6 (paper: the OR operator)
    out_dir: str = "outputs/report"


class StudyParams(Section):
    """The blind side-by-side study of the paper's Fig. 5 (evaluation/study/, docs/evaluation.md#blind-user-study)."""

    main_run: str | None = None  # the run in every pair; None = report.main_run
    baselines: list[str] = ["base", "sft", "videorepa", "moalign"]  # Fig. 5's opponents (base = Pretrained)
    raters: int = Field(3, ge=1)  # rater ids the build issues; each rates every pair (the scripted rater votes as each)
    attention_checks: int = Field(3, ge=0)  # per rater: a ground-truth clip against a corrupted copy of it
    seed: int = Field(0, ge=0)  # opaque ids, sides, order, attention prompts, scripted noise, bootstrap
    rater: Literal["scripted", "human"] = "scripted"  # votes of the grounded-judge stand-in, or of people (`db`)
    db: str = "data/study/votes.sqlite"  # people's votes (`sara study serve`; never a DVC output); read if rater human
    scripted_noise: float = Field(0.15, ge=0)  # sd of a scripted rater's per-vote noise on the 1-5 score
    scripted_tie_margin: float = Field(0.25, ge=0)  # a scripted rater says tie when |score difference| <= this
    max_failed_checks: int = Field(0, ge=0)  # exclusion rule: a rater failing more attention checks is dropped
    n_boot: int = Field(2000, ge=100)  # bootstrap replicates (prompts x raters)
    level: float = Field(0.95, gt=0.0, lt=1.0)  # confidence level of every interval
    out_dir: str = "outputs/study"  # build/ (study_build), report/, plots/, metrics.json (study_report)


class Params(Section):
    project: ProjectParams = ProjectParams()
    data: DataParams = DataParams()
    masks: MasksParams = MasksParams()
    vfm: VFMParams = VFMParams()
    text: TextParams = TextParams()
    aligner: AlignerParams = AlignerParams()
    trd: TRDParams = TRDParams()
    dit: DiTParams = DiTParams()
    train: TrainParams = TrainParams()
    methods: MethodsParams = MethodsParams()
    matrix: MatrixParams = MatrixParams()
    sample: SampleParams = SampleParams()
    rubric: RubricParams = RubricParams()
    comparison: ComparisonParams = ComparisonParams()
    mechanism: MechanismParams = MechanismParams()
    vbench: VBenchParams = VBenchParams()
    clipscore: ClipScoreParams = ClipScoreParams()
    report: ReportParams = ReportParams()
    study: StudyParams = StudyParams()
    pretrain: PretrainParams = PretrainParams()

    @model_validator(mode="after")
    def _main_run_is_trained(self) -> "Params":
        runs = self.matrix.runs
        if self.report.main_run not in runs:
            raise ValueError(f"report.main_run = {self.report.main_run!r} is not a run the DAG trains "
                             f"(runs: {', '.join(runs)})")
        return self

    @model_validator(mode="after")
    def _comparison_names_trained_runs(self) -> "Params":
        from sara.claims import parse_claim

        trained = (BASE, *self.matrix.runs)  # a claim or a reference can only be on what the DAG trains (and the base)
        for ref in self.comparison.references:  # the comparison would skip it without a word
            if ref not in trained:
                raise ValueError(f"comparison.references: {ref!r} is not a run matrix.runs trains "
                                 f"(runs: {', '.join(trained)})")
        scored = (ORACLE, *trained)  # the rows the DAG's rubric stages score
        for row in self.comparison.runs or ():  # else the compare stage fails, after every run was trained
            if row not in scored:
                raise ValueError(f"comparison.runs: {row!r} is not a row the DAG scores ({', '.join(scored)})")
        for text in self.comparison.claims:
            claim = parse_claim(text)
            for run in (claim.a, claim.b):
                if run not in trained:
                    raise ValueError(f"comparison.claims: {text!r} names {run!r}, which matrix.runs does not train "
                                     f"(runs: {', '.join(self.matrix.runs)})")
        return self

    @model_validator(mode="after")
    def _study_runs(self) -> "Params":
        main, baselines = self.study.main_run or self.report.main_run, self.study.baselines
        sampled = (BASE, *self.matrix.runs)  # what the DAG samples: base and the run matrix
        for run in (main, *baselines):
            if run not in sampled:
                raise ValueError(f"study: {run!r} is not a sampled run ({', '.join(sampled)})")
        if not baselines or len(set(baselines)) != len(baselines) or main in baselines:
            raise ValueError(f"study.baselines must be distinct, not empty and without the main run {main!r}, "
                             f"got {baselines}")
        if Path(self.study.db).resolve().is_relative_to(Path(self.study.out_dir).resolve()):
            raise ValueError(f"study.db = {self.study.db!r} is inside study.out_dir, which DVC replaces on every build")
        return self


class ParamsError(InputError, ValueError):
    """Raised for an invalid params file; the message names every offending key path."""


# pydantic error types whose message is clearer with the refused value beside it
_SHOW_INPUT = {"finite_number", "float_type", "int_type", "bool_type", "string_type", "literal_error", "list_type",
               "value_error", "int_from_float", "float_parsing", "int_parsing"}


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.replace("Input should be greater than", "must be >").replace("Value error, ", "")
        msg = msg.replace("Input should be a finite number", "must be a finite number").replace("Input should be", "must be")
        if e["type"] in _SHOW_INPUT and e["loc"] and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        path = ".".join(str(p) for p in e["loc"])
        lines.append(f"{path}: {msg}" if path else msg)  # a whole-file check names its keys itself
    return "\n".join(lines)


def params_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Params:
    """Validate a parsed params mapping; raise ParamsError naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        errors = _format_errors(err)
        sep = "\n" if "\n" in errors else " "  # one bad key: one line
        raise ParamsError(f"invalid params in {source}:{sep}{errors}") from None


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does (and as DVC does): `1e-4` is a float, not a string.

    PyYAML follows YAML 1.1, where a float needs a dot (`1.0e-4`); without this, `lr: 1e-4` would reach the
    strict params as the string '1e-4' and be refused. A quoted `'1e-4'` stays a string and is refused."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(text: str) -> Any:
    """Parse a params YAML document (safe loader, YAML 1.2 floats)."""
    return yaml.load(text, Loader=_YamlLoader)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate a params file. A missing or unreadable file, a YAML syntax error and bad keys each give
    one clear error naming the file (and the line, or the key)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(f"params file {path} cannot be read: {getattr(err, 'strerror', None) or err}") from None
    try:
        raw = read_yaml(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(f"{path}: not valid YAML at {where}: {problem}") from None
    return params_from_dict(raw, str(path))
