"""`sara check-params`: the whole params file, validated before any other stage runs (DVC stage `check_params`).

A stage's params in dvc.yaml are the sections it reads, so a misspelt section (`trian: {steps: 10}`) changed no
stage: `dvc repro` said "up to date" and the typo was silently ignored. This stage tracks the whole file (every
key of every section) and runs nothing but the validation the CLI does before any stage (`load_params`). It is
the first stage of dvc.yaml and nothing depends on it, so `dvc repro` runs it first and stops at its refusal
before any other stage's outputs are deleted, and a valid change reruns only this stage. `sara repro` validates
the file itself before it plans anything.
"""

from __future__ import annotations

from sara.config import Params

SECTIONS: list[str] = []  # no section: dvc.yaml tracks the whole file (`params.yaml:`), see sara/pipeline.py


def run(params: Params) -> None:
    print(f"[check_params] every section and key is valid ({len(Params.model_fields)} sections known)")
