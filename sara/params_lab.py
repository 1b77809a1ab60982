"""The lab scale's pretraining sections (`pretrain.*`): the corpus, the VAE, the video encoder and the base DiT,
each trained here for a number of steps (docs/lab/base.md). Composed into `Params` by sara.config.
"""

from __future__ import annotations

from pydantic import Field

from sara.params_base import PromptSetName, SceneParams, Section, WanFrames


class CorpusParams(SceneParams):
    """The lab pretraining corpus (sara.data.corpus): random synthetic scenes, rendered once on every core."""

    n_train: int = Field(4096, ge=1)  # clips every base model pretrains on
    n_heldout: int = Field(256, ge=1)  # held-out clips (VAE PSNR, encoder probes), with entity masks
    frames: WanFrames = Field(17, ge=1)  # 4k+1 for the Wan VAE (the DiT trains on these clips)
    workers: int = Field(0, ge=0)  # render processes; 0 = every core
    seed: int = Field(7, ge=0)  # separate from data.seed: the corpus never contains a CT or held-out clip
    out_dir: str = "data/corpus"


class VAEPretrainParams(Section):
    """AutoencoderKLWan trained on the corpus (sara.train.pretrain_vae); embedded: tiny random init."""

    base_dim: int = Field(3, ge=3)  # Wan2.1 VAE: 96; the embedded tiny VAE: 3
    # Wan2.1 VAE: [1, 2, 4, 4] (8x spatial); each level after the first halves H and W, the last two also time
    dim_mult: list[int] = Field([1, 1, 1, 1], min_length=3, max_length=4)
    num_res_blocks: int = Field(1, ge=1)  # Wan2.1 VAE: 2
    steps: int = Field(2, ge=1)
    batch_size: int = Field(2, ge=1)
    lr: float = Field(1e-3, gt=0)
    kl_weight: float = Field(1e-6, ge=0)  # small: the latent must stay informative (a near-deterministic AE)
    # Crop phase (None: none): the causal, convolutional VAE trains on cheap random windows, then whole clips
    crop_frames: WanFrames | None = None
    crop_size: int | None = Field(None, ge=8, multiple_of=8)  # pixels; a multiple of the VAE's (<= 8x) compression
    crop_batch_size: int | None = Field(None, ge=1)  # None: batch_size
    full_fraction: float = Field(0.2, ge=0.0, le=1.0)  # the last share of `steps` on whole clips
    cuda_graph: bool = True  # GPU: replay the (launch-bound) step as a CUDA graph per phase (sara.train.cuda_graph)
    eval_clips: int = Field(64, ge=1)  # held-out clips of the PSNR gate
    min_psnr_db: float = 30.0  # gate of the lab scale
    seed: int = Field(0, ge=0)
    out_dir: str = "models/vae"


class VFMPretrainParams(Section):
    """Self-supervised VideoMAE pretraining of the frozen TRD target (sara.train.pretrain_vfm)."""

    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    decoder_hidden_size: int = Field(32, ge=8)
    decoder_num_layers: int = Field(1, ge=1)
    mask_ratio: float = Field(0.9, gt=0.0, lt=1.0)  # tube masking (VideoMAE: 0.9)
    # VideoMAE's per-patch normalised pixel target; off in the lab: flat-colour synthetic patches have ~zero variance,
    # so the normalised target keeps only edges and drops the colour that tells entities apart
    norm_pix_loss: bool = True
    steps: int = Field(2, ge=1)
    batch_size: int = Field(2, ge=1)
    lr: float = Field(1.5e-3, gt=0)
    probe_clips: int = Field(64, ge=4)  # held-out clips of the probe / AUROC gates
    eval_every: int = Field(0, ge=0)  # probe the encoder every k steps on up to 128 held-out clips (0 = at the end only)
    seed: int = Field(0, ge=0)
    out_dir: str = "models/vfm"


class DiTPretrainParams(Section):
    """Base Wan DiT pretraining over all timesteps on the corpus (sara.train.pretrain_dit)."""

    steps: int = Field(2, ge=1)
    batch_size: int = Field(2, ge=1)
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    shift: float = Field(3.0, gt=0)  # timestep shift of the uniform-in-u training law (all timesteps)
    caption_dropout: float = Field(0.1, ge=0.0, le=1.0)  # captions replaced by "" so sampling can use CFG
    compile: bool = False  # torch.compile the transformer (CUDA)
    eval_every: int = Field(1, ge=1)  # sample the held-out prompts every k steps (the learning curve)
    eval_steps: int = Field(2, ge=1)  # denoising steps of the learning-curve samples
    eval_guidance: float = Field(1.0, ge=1.0)
    # prompts of the learning curve: the 18 qualitative synthetic prompts, whatever `sample.prompt_set` evaluates
    eval_prompt_set: PromptSetName = "synthetic"
    eval_seed: int = Field(0, ge=0)  # sampling seed of the curve's videos (not sample.seeds: adding one reruns no base)
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)  # 0 = no EMA
    seed: int = Field(0, ge=0)


class PretrainParams(Section):
    """Lab scale: every base model is pretrained here. Read only when project.scale is lab (docs/lab/base.md)."""

    corpus: CorpusParams = CorpusParams()
    vae: VAEPretrainParams = VAEPretrainParams()
    vfm: VFMPretrainParams = VFMPretrainParams()
    dit: DiTPretrainParams = DiTPretrainParams()
