#!/usr/bin/env bash
# A dress rehearsal of the lab's GPU runs on a CPU: the lab's model shapes with every budget cut to a few steps and
# the 18 qualitative prompts, through the same scripts a GPU session runs, in about 23 min of 2 cores:
#   1. scripts/lab_seeds_side_by_side.sh: the DAG, a second training seed side by side, the base packed
#      (PACK_BASE), the determinism probe;
#   2. scripts/lab_merge_seeds.py and scripts/lab_compare_records.py on the two results archives;
#   3. the side-by-side seeds again on the packed base (BASE_BUNDLE, its parts joined again), with run 11's matrix
#      (runs on the oracle and random targets): only Stage 2, sampling and scoring run;
#   4. run 11's merge: its rows --same-base into the first merge, its second seed after them, the family compared.
# The numbers mean nothing; a step that fails here would fail on the GPU too (it found four such bugs).
#   bash scripts/lab_rehearsal.sh [MINILM]      # MINILM: the fp16 MiniLM copy (default /tmp/minilm-fp16)
# Needs the project's venv active (scripts/install.sh).
set -euo pipefail
MINILM=${1:-/tmp/minilm-fp16}
R=${REHEARSAL:-/tmp/lab_rehearsal}
rm -rf "$R" && mkdir -p "$R/wh"
# lab_run.sh installs a wheel folder beside the machine's packages; here the venv has them all: an empty wheel
python3 - "$R/wh" <<'PY'
import sys, zipfile
meta = {"METADATA": "Metadata-Version: 2.1\nName: rehearsal\nVersion: 1.0\n",
        "WHEEL": "Wheel-Version: 1.0\nGenerator: lab_rehearsal\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
with zipfile.ZipFile(f"{sys.argv[1]}/rehearsal-1.0-py3-none-any.whl", "w") as whl:
    for name, text in meta.items():
        whl.writestr(f"rehearsal-1.0.dist-info/{name}", text)
    whl.writestr("rehearsal-1.0.dist-info/RECORD", "".join(f"rehearsal-1.0.dist-info/{n},,\n" for n in [*meta, "RECORD"]))
PY
# the claims' two-run matrix, then every budget cut to a few steps (one line: tests/test_lab_scripts.py checks it)
export LAB_SET="matrix.runs=[sft,sara-or] study.baselines=[base] report.main_run=sara-or comparison.references=[sft] 'comparison.claims=[sft > base on TA, sara-or > sft on TA]' data.n_train=16 data.n_heldout=8 aligner.steps=2 aligner.checkpoint_every=1 aligner.figure_clips=1 aligner.clips_per_batch=4 pretrain.corpus.n_train=16 pretrain.corpus.n_heldout=8 pretrain.vae.steps=2 pretrain.vae.batch_size=4 pretrain.vae.crop_batch_size=4 pretrain.vae.eval_clips=4 pretrain.vae.cuda_graph=false pretrain.vfm.steps=2 pretrain.vfm.batch_size=4 pretrain.vfm.probe_clips=8 pretrain.vfm.eval_every=1 pretrain.dit.steps=2 pretrain.dit.batch_size=4 pretrain.dit.compile=false pretrain.dit.eval_every=2 pretrain.dit.eval_steps=2 train.steps=4 train.batch_size=2 train.checkpoint_every=2 sample.steps=2 sample.prompt_set=synthetic sample.videos_per_call=18 mechanism.clips=2"
export SITE=$R/site WHEELS=$R/wh JOBS=2 COLLECT_EVERY=10
echo "[rehearsal] 1/4 the side-by-side seeds, the base packed, the probe ($R/lab.log, $R/lab2.log)"
WORK=$R/lab WORK2=$R/lab2 LOG=$R/lab.log LOG2=$R/lab2.log RESULTS=$R/r1.tgz RESULTS2=$R/r2.tgz DET=$R/det \
  PACK_BASE=$R/base.tar PROBE_STEPS=2 POLL=5 SEED2=1025 bash scripts/lab_seeds_side_by_side.sh "$MINILM"
grep -q "dvc status: up to date" "$R/lab2.log" || { echo "[rehearsal] the second seed did not finish: $R/lab2.log" >&2; exit 1; }
[ -s "$R/det/determinism.md" ] || { echo "[rehearsal] no determinism table: $R/det.log" >&2; exit 1; }
echo "[rehearsal] 2/4 merge and compare"
mkdir -p "$R/R1" "$R/R2" && tar xzf "$R/r1.tgz" -C "$R/R1" && tar xzf "$R/r2.tgz" -C "$R/R2"
python3 scripts/lab_merge_seeds.py "$R/R1" "$R/R2/${R#/}/lab2" --seed 1025 --out "$R/merged"
python3 scripts/lab_compare_records.py "$R/merged" --params "$R/lab/params.yaml" --out "$R/comparison"
echo "[rehearsal] 3/4 the side-by-side seeds on the carried base (its parts joined again), run 11's matrix"
cat "$R"/base.tar.[0-9]* > "$R/joined.tar"
# run 11's matrix with the same budgets (one line: tests/test_lab_scripts.py checks it)
export LAB_SET="matrix.runs=[videorepa,videorepa@oracle,sara-or@oracle,videorepa@random] study.baselines=[base] report.main_run=sara-or@oracle comparison.references=[videorepa@oracle] 'comparison.claims=[sara-or@oracle > videorepa@oracle on TA, videorepa@oracle > videorepa@random on TA]' data.n_train=16 data.n_heldout=8 aligner.steps=2 aligner.checkpoint_every=1 aligner.figure_clips=1 aligner.clips_per_batch=4 pretrain.corpus.n_train=16 pretrain.corpus.n_heldout=8 pretrain.vae.steps=2 pretrain.vae.batch_size=4 pretrain.vae.crop_batch_size=4 pretrain.vae.eval_clips=4 pretrain.vae.cuda_graph=false pretrain.vfm.steps=2 pretrain.vfm.batch_size=4 pretrain.vfm.probe_clips=8 pretrain.vfm.eval_every=1 pretrain.dit.steps=2 pretrain.dit.batch_size=4 pretrain.dit.compile=false pretrain.dit.eval_every=2 pretrain.dit.eval_steps=2 train.steps=4 train.batch_size=2 train.checkpoint_every=2 sample.steps=2 sample.prompt_set=synthetic sample.videos_per_call=18 mechanism.clips=2"
WORK=$R/lab3 WORK2=$R/lab4 LOG=$R/lab3.log LOG2=$R/lab4.log RESULTS=$R/r3.tgz RESULTS2=$R/r4.tgz DET=$R/det3 \
  BASE_BUNDLE=$R/joined.tar PROBE_STEPS=2 POLL=5 SEED2=1025 bash scripts/lab_seeds_side_by_side.sh "$MINILM" \
  || { echo "[rehearsal] the side-by-side seeds on the carried base failed: $R/lab3.log, $R/lab4.log" >&2; exit 1; }
if grep -qE "start (corpus|pretrain_vae|pretrain_vfm|init_dit|train_aligner)" "$R/lab3.log"; then
  echo "[rehearsal] a base stage ran although the base was carried: $R/lab3.log" >&2; exit 1
fi
grep -q "dvc status: up to date" "$R/lab4.log" || { echo "[rehearsal] the second seed did not finish: $R/lab4.log" >&2; exit 1; }
# the probe trains sara-or, which run 11's matrix leaves out: on the carried base's encoder and aligner alone
[ -s "$R/det3/determinism.md" ] || { echo "[rehearsal] no determinism table on the carried base: $R/det3.log" >&2; exit 1; }
echo "[rehearsal] 4/4 run 11's rows --same-base into the first merge, then its second seed; the family compared"
mkdir -p "$R/R3" "$R/R4" && tar xzf "$R/r3.tgz" -C "$R/R3" && tar xzf "$R/r4.tgz" -C "$R/R4"
python3 scripts/lab_merge_seeds.py "$R/merged" "$R/R3" --same-base --out "$R/merged_a"
python3 scripts/lab_merge_seeds.py "$R/merged_a" "$R/R4/${R#/}/lab4" --same-base --out "$R/merged_b"
FAMILY="matrix.runs=[sft,sara-or,videorepa,videorepa@oracle,sara-or@oracle,videorepa@random] study.baselines=[base] report.main_run=sara-or comparison.references=[sft,videorepa,videorepa@oracle] 'comparison.claims=[sara-or > sft on TA, sara-or > videorepa on TA, sara-or@oracle > videorepa@oracle on TA, videorepa@oracle > videorepa@random on TA, sft > base on TA]'"
python3 scripts/lab_params.py "$MINILM" --overrides "$FAMILY" --out "$R/family.yaml"
python3 scripts/lab_compare_records.py "$R/merged_b" --params "$R/family.yaml" --out "$R/comparison_family"
for row in videorepa videorepa@oracle sara-or@oracle videorepa@random; do
  for folder in "$row" "$row.seed1025"; do
    [ -d "$R/merged_b/outputs/rubric/$folder" ] || { echo "[rehearsal] $folder missing from the family's merge" >&2; exit 1; }
  done
done
echo "[rehearsal] passed: $R/comparison/comparison.md, $R/comparison_family/comparison.md, $R/det/determinism.md, base bundle $(du -h "$R/base.tar" | cut -f1)"
