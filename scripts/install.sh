#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install SARA with pinned dependencies.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
stamp=.venv/.sara-install-stamp
want=$(cat pyproject.toml scripts/install.sh scripts/torchvision_cpu_hook.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[install] .venv is up to date"
else
  # torch first, from the CPU wheel on this machine when there is one, so nothing later replaces it.
  pip install -q "torch==2.13.0"
  pip install -q -e ".[test]"
  # torchvision 0.28.0 on PyPI is CUDA-linked: on the CPU torch its C extension fails to load and the import dies.
  # Install a .pth hook that registers the two op schemas torchvision's Python code needs (see the hook's docstring).
  site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp scripts/torchvision_cpu_hook.py "$site/_sara_torchvision_cpu_hook.py"
  echo "import _sara_torchvision_cpu_hook" > "$site/_sara_torchvision_cpu_hook.pth"
  python -c "import torchvision, diffusers, transformers; print('[install] torch', __import__('torch').__version__, '| torchvision', torchvision.__version__)"
  echo "$want" > "$stamp"
fi
# VBench-1.0 lives in its own venv (.venv-vbench, evaluation/vbench/env.py; the embedded default's vbench stages use
# it). Built here so that `dvc repro` does not spend its first vbench stage on pip; idempotent (a stamp of its pins).
# Without a network it is left to the first vbench stage, which reports the dimension missing if it cannot build it.
python -c "from evaluation.vbench.env import ensure_env; ensure_env('.venv-vbench')" \
  || echo "[install] the VBench environment was not built; the first vbench stage will try again"
