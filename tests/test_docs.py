"""Every params key the documentation names (README.md, docs/, the flows' help texts) exists in the params schema:
a renamed or removed key (`methods.sara.ops`) fails here instead of living on in the docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sara.config import Params

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = tuple(Params.model_fields)
# `trd.lam_trd`, `methods.videorepa.margin`, and the escaped form of a regex (`trd\.lam_trd`)
KEY = re.compile(r"(?<![\w/.\\-])(?:" + "|".join(SECTIONS) + r")(?:\\?\.[a-z_][a-z0-9_]*)+(?![\w(/-])")
FILE_SUFFIX = {"md", "json", "yaml", "yml", "py", "csv", "png", "mp4", "pt", "txt", "lock", "npy", "sh", "toml",
               "html", "db", "jsonl", "log", "npz"}
# Dotted names the documents give that are not params keys, and what they are
NOT_PARAMS = {
    "train.stepz": "the example of a misspelt key in an error message",
    "clipscore.mean": "a DVC metric (outputs/metrics/<run>/clipscore.json)",
    "clipscore.status": "a DVC metric",
    "vbench.quality": "a DVC metric (outputs/metrics/<run>/vbench.json)",
    "vbench.status": "a DVC metric",
    "vbench.benchmark": "an MLflow tag of vbench/<run>",
    "pretrain.vae.max_minutes": "a key of an earlier revision, in a historical command (docs/lab/base.md, 9d3e809)",
}


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "flows").glob("*.py"))]


def schema_has(dotted: str) -> bool:
    """True when `dotted` (`a.b.c`) names a section, a field or a field of a nested section of Params."""
    node: Any = Params
    for part in dotted.split("."):
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return False
        annotation = node.model_fields[part].annotation
        node = annotation if isinstance(annotation, type) else None  # a leaf (or a union / list): nothing below
    return True


def documented_keys(text: str) -> set[str]:
    keys = set()
    for m in KEY.finditer(text):
        key = m.group(0).replace("\\", "")
        if key.rsplit(".", 1)[-1] not in FILE_SUFFIX and key not in NOT_PARAMS:
            keys.add(key)
    return keys


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_params_keys_exist(doc: Path):
    missing = sorted(k for k in documented_keys(doc.read_text()) if not schema_has(k))
    assert not missing, f"{doc.relative_to(ROOT)} names params keys the schema does not have: {missing}"


def test_the_check_sees_a_removed_key():
    assert documented_keys(r"--keep 'trd\.lam_trd|methods\.sara\.ops'") == {"trd.lam_trd", "methods.sara.ops"}
    assert schema_has("trd.lam_trd") and schema_has("pretrain.corpus.min_entities") and not schema_has("methods.sara.ops")
    assert documented_keys("see outputs/report/report.md and report.md") == set()


def test_the_readme_front_door():
    """The README opens with the two Quickstart commands, its DAG sketch names every stage of dvc.yaml, and its
    "Three ways" table has three rows (it had four, and the sketch lacked corpus, pretrain_vae, pretrain_vfm)."""
    import yaml

    from sara.runs import split_stage_name

    text = (ROOT / "README.md").read_text()
    quick = text[text.index("## Quickstart"):][:600]
    assert "bash scripts/install.sh && . .venv/bin/activate && dvc repro" in quick and "bash .ci/run" in quick
    sketch = text[text.index("### What `dvc repro` runs"):].split("```")[1]
    stages = {split_stage_name(n)[0] for n in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]}
    assert not sorted(s for s in stages if s not in sketch)
    ways = text[text.index("## Three ways"):].split("\n\n")[1]
    assert len([line for line in ways.splitlines() if line.startswith("| ") and "---" not in line]) == 1 + 3
