#!/usr/bin/env bash
# Debian's chromium and chromedriver for the headless MLflow UI test and screenshots (needs root; no-op if present).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[browser] not root: install chromium and chromium-driver with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
