"""`python tests/fault_cli.py <fault> <sara args...>`: the `sara` CLI with a Stage 2 fault installed
(tests/faultlib.py), so a test can crash a real `sara train-dit` process at a chosen step."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # faultlib
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's sara

from faultlib import FaultInjection  # noqa: E402

from sara.cli import main  # noqa: E402
from sara.train.callbacks import install  # noqa: E402

if __name__ == "__main__":
    install(FaultInjection.parse(sys.argv[1]))
    raise SystemExit(main(sys.argv[2:]))
