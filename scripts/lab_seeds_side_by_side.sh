#!/usr/bin/env bash
# The lab DAG (scripts/lab_run.sh) and a second training seed of its Stage 2 runs, trained side by side on one GPU
# from the same base: what `EXTRA_TRAIN_SEEDS` does one pass after the other, in less wall time.
#   LAB_SET="..." SEED2=1025 bash scripts/lab_seeds_side_by_side.sh /tmp/minilm-fp16
# 1. scripts/lab_run.sh runs the DAG in $WORK (CLAIMS_FIRST=1: the claims' stages first).
# 2. Once its base DiT and aligner are done (or unpacked from BASE_BUNDLE), $WORK is copied to $WORK2 with `train.seed: $SEED2`, and the copy
#    reproduces every Stage 2 run's rubric stage: the base stages come from the copy's dvc.lock, so only Stage 2,
#    sampling and judging run there, beside the first DAG's.
#    PACK_BASE=/tmp/base.tar: the base is packed then too (scripts/lab_base_bundle.py; parts of 15 MB beside it,
#    $PACK_BASE.00, .01, ...), for BASE_BUNDLE runs on another machine.
# 3. PROBE_STEPS>0: once both copies' Stage 2 runs are done, benchmarks/determinism.py trains sara-or twice per
#    project.deterministic setting from the first copy's outputs (its trainings share the GPU with the sampling).
# Results: $RESULTS (lab_run.sh's), and $RESULTS2 (the copy's records, the probe's table and logs), both refreshed
# every minute. Merge the two with scripts/lab_merge_seeds.py.
set -euo pipefail
MINILM=$1
SEED2=${SEED2:-1025}
WORK=${WORK:-/tmp/lab}; WORK2=${WORK2:-/tmp/lab2}
LOG=${LOG:-/tmp/lab_run.log}; LOG2=${LOG2:-/tmp/lab2.log}
RESULTS2=${RESULTS2:-/tmp/lab2_results.tgz}
PROBE_STEPS=${PROBE_STEPS:-50}
DET=${DET:-/tmp/det}  # the probe's output folder
POLL=${POLL:-15}   # seconds between looks at the logs
SITE=${SITE:-/tmp/site}
export WORK
: > "$LOG"  # there before the first look at it (the background job opens it when it gets to run)
CLAIMS_FIRST=1 bash scripts/lab_run.sh "$MINILM" >> "$LOG" 2>&1 &
FIRST=$!
base_ready() {  # built by this DAG, or unpacked from BASE_BUNDLE and frozen (scripts/lab_base_bundle.py)
  { grep -q "done  init_dit" "$LOG" && grep -q "done  train_aligner" "$LOG"; } || grep -q "^unpacked .*; frozen: " "$LOG"
}
until base_ready; do
  kill -0 "$FIRST" 2>/dev/null || { echo "the first DAG ended before its base was done" >&2; exit 1; }
  sleep "$POLL"
done
# the first DAG is running: a file it removes while the copy reads it is no reason to stop (what the copy needs, the
# base, params, dvc.yaml and dvc.lock, is at rest by now)
rm -rf "$WORK2" && { cp -a "$WORK" "$WORK2" 2> "$LOG2.copy" || echo "[seeds] copied $WORK with $(wc -l < "$LOG2.copy") files changing (in $LOG2.copy)" >&2; }
if [ -n "${PACK_BASE:-}" ] && ! grep -q "^unpacked .*; frozen: " "$LOG"; then  # a base built here: pack it now
  (cd "$WORK" && PYTHONPATH=$SITE python3 scripts/lab_base_bundle.py pack "$WORK" "$PACK_BASE" \
     && cp base_origin.json "$WORK2/" && split -b 15m -d "$PACK_BASE" "$PACK_BASE.") > "$PACK_BASE.log" 2>&1 &
fi
cd "$WORK2"
# no live state of the first DAG: DVC's locks and indexes, Prefect's home, the MLflow store it is writing (a copy of
# a SQLite file mid-write can be malformed; the copy's stages start a store of their own), Stage 2 checkpoints
rm -rf .dvc/tmp .prefect mlflow.db mlflow.db-* mlruns models/dit_state models/dit tmp/repro_logs
# the wheels installed by lab_run.sh (yaml, dvc) and the copy's own code
export PYTHONPATH=$PWD:$SITE PATH=$SITE/bin:$PATH DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1
python3 - "$SEED2" <<'EOF'
import sys, yaml
raw = yaml.safe_load(open("params.yaml"))
raw["train"]["seed"] = int(sys.argv[1])
open("params.yaml", "w").write(yaml.safe_dump(raw, sort_keys=False))
EOF
# the runs by name (their rubric folders: `videorepa@oracle`) and as DVC stage names spell them (`rubric-videorepa-oracle`)
RUNS=$(python3 -c "import yaml; print(' '.join(yaml.safe_load(open('params.yaml'))['matrix']['runs']))")
STAGE_IDS=$(python3 -c "import sys; from sara.runs import Run; print(' '.join(Run.parse(r).stage_id for r in sys.argv[1:]))" $RUNS)
echo "[seeds] $WORK2: train.seed $SEED2, runs $RUNS" > "$LOG2"
sara repro --jobs "${JOBS:-8}" --times repro_times_seed.json $(printf 'rubric-%s ' $STAGE_IDS) >> "$LOG2" 2>&1 &
SECOND=$!
collect() {  # paths relative to / so that the archive keeps where each came from
  local paths=("${LOG2#/}") p
  for p in "$WORK2/repro_times_seed.json" "$WORK2/params.yaml" "$WORK2/base_origin.json" "$DET" $(printf "$WORK2/outputs/rubric/%s " $RUNS); do
    [ -e "$p" ] && paths+=("${p#/}")
  done
  tar czf "$RESULTS2.part" --exclude='*.mp4' --exclude='*.pt' --exclude='*.safetensors' --exclude='.*.tmp*' \
    --ignore-failed-read -C / "${paths[@]}" && mv "$RESULTS2.part" "$RESULTS2"
}
stage2_done() { for r in $STAGE_IDS; do grep -q "done  train_dit-$r in" "$1" || return 1; done; }
probe() {
  PROBED=1
  (cd "$WORK" && PYTHONPATH=$WORK:$SITE python3 benchmarks/determinism.py --params "$WORK/params.yaml" --run sara-or \
     --steps "$PROBE_STEPS" --out "$DET" > "$DET.log" 2>&1; mkdir -p "$DET"; cp "$DET.log" "$DET/") &
}
PROBED=0
# until both DAGs end; the probe once the first DAG's Stage 2 runs are done and the copy's are done or it ended
while kill -0 "$SECOND" 2>/dev/null || kill -0 "$FIRST" 2>/dev/null; do
  sleep "$POLL"; collect || true
  if [ "$PROBE_STEPS" -gt 0 ] && [ "$PROBED" = 0 ] && stage2_done "$LOG" \
     && { stage2_done "$LOG2" || ! kill -0 "$SECOND" 2>/dev/null; }; then
    probe
  fi
done
wait "$SECOND" || echo "[seeds] the second seed's repro failed" >> "$LOG2"
wait "$FIRST" || true
wait
collect || true
