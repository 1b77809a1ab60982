#!/usr/bin/env bash
# The lab run's results without its models and videos (a few MB): what scripts/lab_base_report.py,
# scripts/lab_compare_records.py, scripts/lab_mechanism_targets.py and scripts/lab_figures.py read.
#   bash scripts/lab_collect.sh /tmp/lab results.tgz
# scripts/lab_run.sh refreshes it every minute while the DAG runs, so a run cut short still leaves its results.
# With them, what they were made from: the params, dvc.lock and base_origin.json (which carried base, if any;
# scripts/lab_base_bundle.py). A stage still writing its output (`.<name>.tmp<pid>`) is left out; a missing path is skipped.
# The comparison's qualitative grids stay out (with run 12's eight rows the archive passed the device's 16 MiB
# return limit once compare had written them; the comparison folder without them packs to 0.4 MB): bring
# them back on their own, `tar czf grids.tgz -C WORK outputs/comparison/figures/qualitative`.
set -uo pipefail
WORK=$1; OUT=$(realpath -m "$2")
cd "$WORK" && tar czf "$OUT.part" --exclude='*.mp4' --exclude='*.pt' --exclude='*.safetensors' --exclude='*.bin' \
    --exclude='.*.tmp*' --exclude='outputs/rubric/oracle/*.png' --exclude='outputs/comparison/figures/qualitative' \
    --ignore-failed-read \
    $(ls -d params.yaml dvc.lock base_origin.json repro_times.json repro_times_claims.json gpu_util.csv outputs/comparison outputs/mechanism outputs/metrics outputs/rubric \
      outputs/aligner outputs/study models/vae/metrics.json models/vae/reconstruction.png models/vfm/metrics.json \
      models/base/pretrain_metrics.json models/base/curve.json models/base/curve tmp/repro_logs 2>/dev/null) \
  && mv "$OUT.part" "$OUT"
