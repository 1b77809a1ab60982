#!/usr/bin/env bash
# Short GPU measurements that need no lab base (docs/offline.md for the wheels and MiniLM copy):
#   1. benchmarks/sample_throughput.py: videos/s of the lab's sampler (lab530 captions) at its call size, peak memory;
#   2. benchmarks/grounded_judge.py: the rubric stage's throughput against its pool size, on this machine's cores;
#   3. benchmarks/determinism.py: Stage 2 of sara-or trained twice per project.deterministic setting at the lab's
#      model shapes, on a DAG built with the rehearsal's budget cuts (scripts/lab_rehearsal.sh) and a real batch.
# Each step's output goes to $OUT_DIR as it finishes (rows to append to the benchmarks' .md files, logs):
#   WHEELS=/tmp/wh OUT_DIR=/tmp/probes bash scripts/lab_gpu_probes.sh /tmp/minilm-fp16
# PROBES="sample judge determinism" (the default) picks the steps; SAMPLE_ARGS, JUDGE_ARGS, PROBE_STEPS shrink them; PROBE_WORK, PROBE_DET: the probe's DAG and output folders
# (tests/test_lab_scripts.py: the sampler and judge steps shrunk, for real; the determinism step with stand-ins; the
# whole script once shrunk on a 2-core CPU: 6.4 min, both settings identical).
set -uo pipefail
MINILM=$1
OUT_DIR=${OUT_DIR:-/tmp/probes}; mkdir -p "$OUT_DIR"
SITE=${SITE:-/tmp/site}
WHEELS=${WHEELS:-.whl}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH=$PWD:$SITE DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1
python3 scripts/lab_params.py "$MINILM" --overrides "" && cp params.yaml "$OUT_DIR/params_lab.yaml"
PROBES=${PROBES:-sample judge determinism}
if [[ " $PROBES " == *" sample "* ]]; then
echo "[probes] 1/3 sampling throughput $(date +%T)"
python3 benchmarks/sample_throughput.py --params params.yaml --prompt-set lab530 ${SAMPLE_ARGS:---videos 133 --per-call 133} \
  > "$OUT_DIR/sample_throughput.rows" 2> "$OUT_DIR/sample_throughput.log"
fi
if [[ " $PROBES " == *" judge "* ]]; then
echo "[probes] 2/3 grounded judge $(date +%T)"
python3 benchmarks/grounded_judge.py ${JUDGE_ARGS:---videos 256 --workers 2,8,16} > "$OUT_DIR/grounded_judge.rows" 2> "$OUT_DIR/grounded_judge.log"
fi
if [[ " $PROBES " == *" determinism "* ]]; then
echo "[probes] 3/3 determinism at the lab's shapes $(date +%T)"
# the rehearsal's cuts (its first LAB_SET) with a batch of 16 clips, Stage 2's DAG only
CUTS=$(grep -m1 '^export LAB_SET=' scripts/lab_rehearsal.sh | cut -d'"' -f2 | sed 's/ train.batch_size=2 / train.batch_size=16 /')
PROBE_WORK=${PROBE_WORK:-/tmp/lab_probe}; PROBE_DET=${PROBE_DET:-/tmp/det}
LAB_SET=$CUTS WORK=$PROBE_WORK RESULTS=$OUT_DIR/probe_dag.tgz COLLECT_EVERY=${COLLECT_EVERY:-30} WHEELS=$WHEELS SITE=$SITE \
  bash scripts/lab_run.sh "$MINILM" train_dit-sara-or > "$OUT_DIR/probe_dag.log" 2>&1
(cd "$PROBE_WORK" && PYTHONPATH=$PROBE_WORK:$SITE python3 benchmarks/determinism.py --params params.yaml --run sara-or \
   --steps "${PROBE_STEPS:-50}" --out "$PROBE_DET" > "$OUT_DIR/determinism.log" 2>&1)
cp "$PROBE_DET/determinism.md" "$OUT_DIR/" 2>/dev/null
fi
echo "[probes] done $(date +%T)"
