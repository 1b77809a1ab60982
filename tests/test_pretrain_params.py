"""The lab pretraining stages depend on the params they read, not on whole sections.

Found on the H200: pointing `dit.text_encoder_path` at another MiniLM copy reran the 2.5-minute VAE, because
`pretrain_vae` depended on all of `dit` (and on all of `pretrain`: a new DiT or encoder budget reran it too).
Found later: `init_dit` depended on all of `sample`, so another sampling seed, step count, guidance or prompt set
reran the 11-minute lab base (and made a carried base refuse to unpack) though the base reads none of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

STAGES = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]


def covers(entries: list[str], key: str) -> bool:
    """Whether a stage's dvc.yaml `params` entries include `key` (an entry covers itself and everything below)."""
    return any(key == e or key.startswith(e + ".") for e in entries)


@pytest.mark.parametrize("stage, unrelated", [
    ("corpus", ["pretrain.vae.lr", "pretrain.vfm.steps", "pretrain.dit.lr"]),
    ("pretrain_vae", ["dit.text_encoder_path", "dit.num_layers", "pretrain.dit.lr", "pretrain.vfm.steps",
                      "pretrain.corpus.n_train"]),
    ("pretrain_vfm", ["pretrain.vae.lr", "pretrain.dit.lr", "pretrain.corpus.n_train"]),
    ("init_dit", ["pretrain.vfm.steps", "pretrain.vae.lr", "pretrain.corpus.n_train", "sample.seeds", "sample.steps",
                  "sample.guidance", "sample.prompt_set", "sample.videos_per_call", "sample.scheduler",
                  "sample.out_dir", "sample.vbench_prompts"]),
])
def test_a_pretraining_stage_ignores_params_it_does_not_read(stage: str, unrelated: list[str]):
    entries = STAGES[stage]["params"]
    assert not [k for k in unrelated if covers(entries, k)], entries


@pytest.mark.parametrize("stage, read", [
    ("corpus", ["pretrain.corpus.n_train", "project.scale"]),
    ("pretrain_vae", ["pretrain.vae.lr", "pretrain.vae.steps", "dit.kind", "dit.init_seed", "dit.vae_path",
                      "pretrain.corpus.out_dir"]),
    ("pretrain_vfm", ["pretrain.vfm.steps", "vfm.kind", "pretrain.corpus.out_dir"]),
    ("init_dit", ["pretrain.dit.lr", "pretrain.vae.out_dir", "pretrain.corpus.out_dir", "dit.num_layers",
                  "dit.text_encoder_path", "pretrain.dit.eval_prompt_set", "pretrain.dit.eval_seed", "sample.shift",
                  "sample.frames", "sample.height", "sample.width", "sample.fps", "sample.negative_prompt",
                  "sample.boundary_ratio"]),
])
def test_a_pretraining_stage_still_depends_on_what_it_reads(stage: str, read: list[str]):
    entries = STAGES[stage]["params"]
    assert all(covers(entries, k) for k in read), entries
