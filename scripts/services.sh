#!/usr/bin/env bash
# Local services on 127.0.0.1: Prefect server, the `sara/ablation-sweep` serve process, the MLflow UI.
#   scripts/services.sh start [--prefect-port 4200] [--mlflow-port 5000] [--gpu-slots 1]
#   scripts/services.sh status | env | stop
# Same as `python -m flows.services ...` with the project's .venv (no activation needed).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m flows.services "$@"
