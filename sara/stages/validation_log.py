"""Stage 2 validation videos (sara.train.validation) into the run's MLflow run.

Each validation step's videos go to the artifacts `validation/step_<n>/<prompt_id>_s<seed>.mp4`; the videos of
prompts with ground truth (the synthetic set) are scored by the grounded judge and logged as the metrics `val_TA`
and `val_MQ` at that step, beside `val_seconds` (the sampling's wall time).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sara.train.validation import ValidationVideo


def log_validation(step: int, videos: list[ValidationVideo], seconds: float) -> None:
    """The sink `train_stage2` hands each validation's videos to (rank 0, inside the run's MLflow run)."""
    from evaluation.grounded import grounded_ta_mq
    from sara.data.video_io import write_video
    from sara.tracking import log_artifact, log_metrics

    with tempfile.TemporaryDirectory() as tmp:
        for v in videos:
            write_video(Path(tmp) / f"{v.prompt_id}_s{v.seed}.mp4", v.frames, v.fps)
        log_artifact(tmp, f"validation/step_{step:06d}")
    truth = [(v.spec, v.frames) for v in videos if v.spec is not None]
    metrics = {f"val_{k}": score for k, score in grounded_ta_mq(truth, videos[0].fps).items()} if truth else {}
    log_metrics({**metrics, "val_seconds": seconds}, step)
