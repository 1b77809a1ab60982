#!/usr/bin/env bash
# The lab DAG on an offline GPU machine (docs/offline.md): install the wheel folder beside the machine's own packages,
# point the text model at a local MiniLM copy, write dvc.yaml for the lab's run matrix, and run `sara repro` on the given targets in a copy of the checkout,
# sampling GPU utilisation throughout (scripts/gpu_busy.py). Results stay in the copy ($WORK), and their small part
# (no models, no videos) in $RESULTS (scripts/lab_collect.sh), refreshed every minute while the DAG runs:
#   bash scripts/lab_run.sh /tmp/minilm-fp16 init_dit pretrain_vfm eval_aligner rubric-base
#   CLAIMS_FIRST=1 bash scripts/lab_run.sh /tmp/minilm-fp16
#   LAB_SET="train.seed=1025" CLAIMS_FIRST=1 bash scripts/lab_run.sh /tmp/minilm-fp16   # a replicate: another training seed
#   EXTRA_TRAIN_SEEDS=1025 CLAIMS_FIRST=1 bash scripts/lab_run.sh /tmp/minilm-fp16   # the claims' runs trained twice on one base
#   BASE_BUNDLE=/tmp/base.tar CLAIMS_FIRST=1 bash scripts/lab_run.sh /tmp/minilm-fp16  # on a base an earlier run packed
set -euo pipefail
MINILM=$1; shift
WORK=${WORK:-/tmp/lab}
# WHEELS: the wheel folder (.whl by default; another path where the checkout and .whl exceed one copy: docs/offline.md)
WHEELS=${WHEELS:-.whl}
if ! compgen -G "$WHEELS/*.whl" > /dev/null; then
  echo "lab_run.sh: no wheels in WHEELS=$WHEELS (docs/offline.md)" >&2; exit 2
fi
SITE=${SITE:-/tmp/site}  # where the wheels are installed, beside the machine's own packages
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
mkdir -p "$SITE/bin" && printf '#!/bin/sh\nexec python3 -m sara.cli "$@"\n' > "$SITE/bin/sara" && chmod +x "$SITE/bin/sara"
BUNDLE=${BASE_BUNDLE:+$(realpath -m "$BASE_BUNDLE")}
rm -rf "$WORK" && mkdir -p "$WORK" && tar --exclude=./.whl --exclude='./.whl-*' --exclude=./.minilm-fp16 -cf - . | tar -xf - -C "$WORK"
cd "$WORK"
export PYTHONPATH=$PWD:$SITE PATH=$SITE/bin:$PATH DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1
# LAB_SET="train.seed=1025 ...": params overrides, split as a shell splits words (quote a value with spaces, such as
# a claim), checked before anything runs (scripts/lab_params.py)
python3 scripts/lab_params.py "$MINILM" --overrides "${LAB_SET:-}"
python3 -m sara.pipeline  # dvc.yaml for this params file's run matrix (`matrix.runs`)
# BASE_BUNDLE=base.tar: a base built by an earlier run with these params and code (scripts/lab_base_bundle.py pack),
# unpacked here and frozen, so that the DAG trains only what is below it
if [ -n "$BUNDLE" ]; then python3 scripts/lab_base_bundle.py unpack "$BUNDLE" .; fi
if [ -d .git ]; then dvc config --local core.autostage false; else dvc config --local core.no_scm true; fi
RESULTS=${RESULTS:-/tmp/lab_results.tgz}  # the results without models and videos, refreshed every minute
# CLAIMS_FIRST=1 (no targets given): first the stages that score the runs the pre-registered claims compare
# (scripts/lab_claim_stages.py), then the rest of the DAG; a run cut short by the device time has the claims' scores.
# EXTRA_TRAIN_SEEDS=1025[,1026]: then every run of that pass is trained again from the same base with those
# train.seed values (`sara repro --extra-train-seeds`, flows/train_seeds.py): with CLAIMS_FIRST, the claims' runs.
REPRO_CMD="sara repro --jobs ${JOBS:-8}"
SEEDS=${EXTRA_TRAIN_SEEDS:+--extra-train-seeds $EXTRA_TRAIN_SEEDS}
if [ "${CLAIMS_FIRST:-0}" = 1 ] && [ $# -eq 0 ]; then
  CLAIM_STAGES=$(python3 scripts/lab_claim_stages.py params.yaml | tr '\n' ' ')
  set -- bash -c "$REPRO_CMD --times repro_times_claims.json $SEEDS $CLAIM_STAGES && $REPRO_CMD --times repro_times.json"
else
  set -- $REPRO_CMD --times repro_times.json $SEEDS "$@"
fi
python3 scripts/gpu_busy.py record gpu_util.csv -- "$@" &
REPRO=$!
while kill -0 "$REPRO" 2>/dev/null; do sleep "${COLLECT_EVERY:-60}"; bash scripts/lab_collect.sh "$WORK" "$RESULTS" || true; done
STATUS=0; wait "$REPRO" || STATUS=$?
bash scripts/lab_collect.sh "$WORK" "$RESULTS" || true
exit "$STATUS"
