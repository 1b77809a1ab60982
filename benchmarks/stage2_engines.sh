#!/usr/bin/env bash
# Stage 2 at lab shapes under both engines (train.engine deepspeed | torch), on an offline GPU machine
# (docs/offline.md: the wheel folder installed at /tmp/site, a MiniLM copy at $MINILM). Results go to $OUT.
#   bash benchmarks/stage2_engines.sh setup     # lab shapes, a few training steps: sara repro train_aligner init_dit
#   bash benchmarks/stage2_engines.sh single    # one run alone, each engine (benchmarks/stage2_step.py)
#   bash benchmarks/stage2_engines.sh parallel  # $N runs side by side, each engine: what the lab matrix sees
#   bash benchmarks/stage2_engines.sh ops       # aten ops per part of the step, each engine
#   bash benchmarks/stage2_engines.sh determinism  # two trainings per project.deterministic setting: the same model? (benchmarks/determinism.py)
set -euo pipefail
PHASE=$1
MINILM=${MINILM:-/tmp/minilm-fp16}
WORK=${WORK:-/tmp/lab_shapes}
OUT=${OUT:-/tmp/out}
N=${N:-6}
RUN=${RUN:-sara-or}
mkdir -p "$OUT"
export PATH=/tmp/site/bin:$PATH DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
step() { python3 benchmarks/stage2_step.py --params params.yaml --run "$RUN" --cache-frozen-inputs "$@"; }
case "$PHASE" in
  setup)
    rm -rf "$WORK" && mkdir -p "$WORK" && tar --exclude=./.whl --exclude=./.minilm-fp16 -cf - . | tar -xf - -C "$WORK"
    cd "$WORK" && export PYTHONPATH=$PWD:/tmp/site
    mkdir -p /tmp/site/bin && printf '#!/bin/sh\nexec python3 -m sara.cli "$@"\n' > /tmp/site/bin/sara && chmod +x /tmp/site/bin/sara
    python3 benchmarks/lab_shapes.py params.yaml --text-path "$MINILM"
    python3 -m sara.pipeline
    if [ -d .git ]; then dvc config --local core.autostage false; else dvc config --local core.no_scm true; fi
    sara repro --jobs 8 train_aligner init_dit > "$OUT/setup.log" 2>&1 || { tail -40 "$OUT/setup.log"; exit 1; }
    tail -3 "$OUT/setup.log" ;;
  single)
    cd "$WORK" && export PYTHONPATH=$PWD:/tmp/site
    for e in deepspeed torch; do step --engine "$e" --steps 100 --warmup 30 2>&1 | grep -E '^\||^sara|^sft|^video' | tee -a "$OUT/single.md"; done ;;
  parallel)
    cd "$WORK" && export PYTHONPATH=$PWD:/tmp/site OMP_NUM_THREADS=$(( $(nproc) / N ))
    for e in deepspeed torch; do
      t0=$(date +%s.%N)
      for i in $(seq "$N"); do step --engine "$e" --steps 120 --warmup 40 > "$OUT/parallel_${e}_$i.txt" 2>&1 & done
      wait
      echo "$e: $N runs side by side, wall $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s" | tee -a "$OUT/parallel.md"
    done ;;
  determinism)
    cd "$WORK" && export PYTHONPATH=$PWD:/tmp/site
    python3 benchmarks/determinism.py --params params.yaml --run "$RUN" --steps "${STEPS:-200}" --out "$OUT/determinism" ;;
  ops)
    cd "$WORK" && export PYTHONPATH=$PWD:/tmp/site
    for e in deepspeed torch; do step --engine "$e" --steps 30 --warmup 10 --count-ops 2>&1 | grep -E '^\||^sara|^sft|^video' | tee -a "$OUT/ops.md"; done ;;
  *) echo "unknown phase $PHASE (setup | single | parallel | ops)" >&2; exit 2 ;;
esac
