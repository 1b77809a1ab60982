"""Stage 2 checkpoints: the resumable train state and the final exported model.

Two places per run:
- `<train.state_dir>/<run>/` (git-ignored scratch, not a DVC output): DeepSpeed checkpoints `step_XXXXXXX/`
  (model, optimizer, lr scheduler, client state = step + fingerprint) with `latest` written last, and
  `fingerprint.json`. DVC deletes a stage's outputs before it runs, so the resumable state cannot live inside the
  final output. A state is resumed only if its fingerprint equals the current one: the run name, the params the
  run reads, the content hash of the code the run can import, the content hashes of its upstream outputs
  (clips, base model, aligner, masks) and the world size. A stale state is discarded, never silently continued,
  and a finished run deletes its state once its final model is exported, so no state outlives its run.
- `<train.out_dir>/<run>/` (the DVC output): `transformer/` (diffusers format), `aux.pt` (projector etc.),
  `metrics.json`; written to a temp folder and renamed, so it is complete or absent.

Exactness of resume: data order and all random draws are functions of (seed, sample-stream position) (see stage2.py), so
the model, optimizer and scheduler state plus the step number are the whole state of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from sara.io import atomic_dir, save_tensors

TAG_PREFIX = "step_"
FINGERPRINT = "fingerprint.json"


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:07d}"


def fingerprint(run: str, params_subset: dict[str, Any], world_size: int, inputs: dict[str, str]) -> str:
    """Hash of what determines a run's trajectory: its name, the params it reads, the number of ranks and the
    content digests of its code and upstream outputs (`inputs_digests`)."""
    blob = json.dumps({"run": run, "params": params_subset, "world_size": world_size, "inputs": inputs},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def inputs_digests(code_entry: str, input_dirs: Sequence[str | Path]) -> dict[str, str]:
    """{"code": digest of `code_entry`'s import closure, <dir>: content digest of each upstream output}."""
    from sara.deps import code_digest, tree_digest

    return {"code": code_digest(code_entry), **{str(d): tree_digest(d) for d in input_dirs}}


def discard_state(state_dir: str | Path) -> None:
    """Rank 0, after the final export: the run is done, its resumable state must not outlive it."""
    shutil.rmtree(state_dir, ignore_errors=True)


def latest_tag(state_dir: str | Path) -> str | None:
    """The tag named by DeepSpeed's `latest` file, if that checkpoint folder exists."""
    latest = Path(state_dir) / "latest"
    if not latest.is_file():
        return None
    tag = latest.read_text().strip()
    return tag if (Path(state_dir) / tag).is_dir() else None


def resumable_tag(state_dir: str | Path, fp: str) -> str | None:
    """The checkpoint to resume from, or None. Only a state written under the same fingerprint counts."""
    state = Path(state_dir)
    fp_file = state / FINGERPRINT
    if not fp_file.is_file():
        return None
    if json.loads(fp_file.read_text()).get("fingerprint") != fp:
        return None
    return latest_tag(state)


def prepare_state_dir(state_dir: str | Path, fp: str, *, resume: bool) -> str | None:
    """Rank 0 only: keep a matching state (returns its tag) or wipe a stale / unwanted one and start fresh."""
    state = Path(state_dir)
    tag = resumable_tag(state, fp) if resume else None
    if tag is None and state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    if tag is None:
        tmp = state / f".{FINGERPRINT}.tmp"
        tmp.write_text(json.dumps({"fingerprint": fp}))
        os.replace(tmp, state / FINGERPRINT)
    return tag


def prune_checkpoints(state_dir: str | Path, keep: int) -> None:
    """Rank 0: delete all but the newest `keep` step folders (never the one `latest` names)."""
    state = Path(state_dir)
    current = latest_tag(state)
    tags = sorted(p.name for p in state.glob(f"{TAG_PREFIX}*") if p.is_dir())
    for tag in tags[:-keep] if keep > 0 else tags:
        if tag != current:
            shutil.rmtree(state / tag, ignore_errors=True)


def export_final(
    run_dir: str | Path,
    transformer: nn.Module,
    aux: nn.Module,
    metrics: dict[str, Any],
) -> Path:
    """Write the final model of a run atomically and sealed (`sara.io.atomic_dir`): `transformer/` (diffusers),
    `aux.pt`, `metrics.json` (what determines the model only: no timings, which differ from run to run)."""
    run_dir = Path(run_dir)
    with atomic_dir(run_dir) as tmp:
        transformer.save_pretrained(tmp / "transformer")  # in the engine's precision (fp32 on CPU, bf16 on GPU)
        save_tensors({k: v.detach().cpu().clone() for k, v in aux.state_dict().items()}, tmp / "aux.pt")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    return run_dir
