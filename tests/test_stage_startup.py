"""What a stage process imports before it works: each of the ~50 stages of the embedded DAG is its own `sara <stage>`
process, so every import the stage does not need is paid ~50 times (benchmarks/stage_startup.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_after(code: str) -> dict[str, list[str]]:
    """Run `code` in a fresh interpreter at the repository root; return the first-party stage modules and the heavy
    libraries it left in sys.modules."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps({'stages': sorted(m for m in sys.modules if m.startswith('sara.stages.')),"
             " 'heavy': sorted(m for m in ('mlflow', 'torch', 'diffusers', 'transformers', 'pandas') if m in sys.modules)}))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_stage_that_logs_nothing_imports_only_its_own_module():
    """The command table imported every stage's module to add its options, so each stage process paid for the
    modules of the other twenty; a stage that logs nothing (`check-params`, `code`) imports neither MLflow nor torch."""
    seen = imported_after(f"from sara.cli import main; main(['check-params', '--params', {str(ROOT / 'params.yaml')!r}])")
    assert seen == {"stages": ["sara.stages.check_params"], "heavy": []}


def test_a_stage_s_own_options_still_parse():
    """Only the named stage's module adds its options; the others' subcommands are still listed."""
    from sara.cli import main

    try:
        main(["code", "--of", "no-such-kind"])
    except SystemExit as err:
        assert err.code == 2  # argparse refused the value: `code`'s own `--of` choices were added
    else:
        raise AssertionError("`sara code --of no-such-kind` was accepted")
