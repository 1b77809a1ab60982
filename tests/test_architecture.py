"""The layer rules of docs/architecture.md, read from the code's own imports (every import, also those inside
functions), plus the house rules that a reader can check by reading files: no file cites a document the
repository does not hold, and test scaffolding lives under tests/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layers, lowest first. A module may import its own layer and the layers below it, never one above.
LIBRARY = ("sara", "sara.config", "sara.params_base", "sara.params_lab", "sara.weights", "sara.env", "sara.errors", "sara.io", "sara.integrity", "sara.runs", "sara.claims", "sara.deps", "sara.data", "sara.masks", "sara.models", "sara.losses",
           "sara.methods", "sara.train", "sara.sample")
EVALUATION = ("evaluation",)
PIPELINE = ("sara.stages", "sara.cli", "sara.tracking", "sara.pipeline", "sara.lifeline", "sara.warm")
ORCHESTRATION = ("flows",)
LAYERS = {"library": LIBRARY, "evaluation": EVALUATION, "pipeline": PIPELINE, "orchestration": ORCHESTRATION}
ORDER = list(LAYERS)
# The named hand-offs upwards (docs/architecture.md): `sara sweep` and `sara repro` pass their argv to a flow's main.
HANDOFFS = {("sara.cli", "flows.sweep"), ("sara.cli", "flows.sweep.main"),
            ("sara.cli", "flows.repro"), ("sara.cli", "flows.repro.main"),
            ("sara.cli", "flows.verify"), ("sara.cli", "flows.verify.main")}
# Single-device PyTorch: the model and loss code knows nothing of distribution, tracking or orchestration.
PURE = ("sara.models", "sara.losses")
PURE_FORBIDDEN = ("deepspeed", "mlflow", "prefect", "dvc")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str | None:
    """The layer of `module`: the one whose longest prefix matches (`sara` alone is the package's face)."""
    best, length = None, -1
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length and (p != "sara" or module == "sara"):
                best, length = layer, len(p)
    return best


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """Every absolute module an import statement in `path` names, with its line (relative imports resolved against
    `module`, by default the module `path` is in this repository)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module or _module_name(path)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]  # `from sara import stages`
    return out


def _sources() -> list[Path]:
    return sorted(p for d in ("sara", "evaluation", "flows") for p in (ROOT / d).rglob("*.py"))


def test_no_import_runs_up_a_layer():
    """library < evaluation < pipeline < orchestration: nothing imports a layer above its own."""
    wrong = []
    for path in _sources():
        here = _layer(_module_name(path))
        if here is None:
            wrong.append(f"{path.relative_to(ROOT)} belongs to no layer: add it to docs/architecture.md and here")
            continue
        for line, mod in _imports(path):
            there = _layer(mod)
            if there is not None and ORDER.index(there) > ORDER.index(here) and (_module_name(path), mod) not in HANDOFFS:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {mod} ({there})")
    assert not wrong, "imports that run up a layer:\n" + "\n".join(wrong)


def test_flows_drive_dvc_and_never_call_a_stage():
    """Orchestration runs stages through `dvc repro`; it never imports a stage module or evaluation."""
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in (ROOT / "flows").rglob("*.py")
             for line, mod in _imports(p) if mod.startswith(("sara.stages", "sara.cli", "evaluation"))]
    assert not wrong, "\n".join(wrong)


def test_models_and_losses_stay_single_device_pytorch():
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _sources()
             if _module_name(p).startswith(PURE)
             for line, mod in _imports(p) if mod.split(".")[0] in PURE_FORBIDDEN]
    assert not wrong, "\n".join(wrong)


def test_the_layer_checker_sees_a_violation(tmp_path: Path):
    """The checker itself: an import inside a function counts, and a relative import is resolved. The probe is
    written to the test's temp dir, not into sara/: another test process scanning sara/ would see its import."""
    f = tmp_path / "_probe_for_test.py"
    f.write_text("def f():\n    from evaluation.report import x\n\nfrom ..stages import data\n")
    mods = [m for _, m in _imports(f, "sara.data._probe_for_test")]
    assert "evaluation.report" in mods and "sara.stages.data" in mods


def test_test_scaffolding_lives_under_tests():
    """Helpers that only tests use are not shipped in a package."""
    assert not (ROOT / "flows" / "testing.py").exists()


def test_no_import_of_a_module_that_is_gone():
    """Every first-party module an import names exists (catches a caller left behind by a move)."""
    missing = []
    for path in [*_sources(), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for line, mod in _imports(path):
            if mod.split(".")[0] not in ("sara", "evaluation", "flows"):
                continue
            parts = mod.split(".")
            found = any((ROOT.joinpath(*parts[:n]).with_suffix(".py")).is_file() or (ROOT.joinpath(*parts[:n]) / "__init__.py").is_file()
                        for n in (len(parts), len(parts) - 1) if n)
            if not found:
                missing.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not missing, "\n".join(missing)


def test_every_code_path_dvc_yaml_names_exists():
    """A moved module must take its dvc.yaml dependency with it (a stale dep is a DVC error at repro time)."""
    text = (ROOT / "dvc.yaml").read_text()
    paths = sorted(set(re.findall(r"(?<![\w/$.])((?:sara|evaluation|scripts|flows)/[\w/.\-]*\w)", text)))
    assert paths, "no code dependency found in dvc.yaml"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"dvc.yaml names paths that do not exist: {missing}"


def test_only_the_pipeline_and_flows_talk_to_mlflow():
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _sources()
             if _layer(_module_name(p)) in ("library", "evaluation")
             for line, mod in _imports(p) if mod.split(".")[0] == "mlflow"]
    assert not wrong, "\n".join(wrong)
CITATION = re.compile(r"\bMETHOD(\.md)?\b")  # the outside notes file, by any section, table or item


@pytest.mark.parametrize("folder", ["sara", "evaluation", "flows", "benchmarks", "tests", "docs", "scripts", "configs"])
def test_no_file_cites_a_document_the_repository_does_not_hold(folder: str):
    """Cite the paper's own sections and equations or docs/, never an outside notes file."""
    hits = []
    for p in sorted((ROOT / folder).rglob("*")):
        if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".json") and p != Path(__file__):
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
                if CITATION.search(line):
                    hits.append(f"{p.relative_to(ROOT)}:{i}")
    assert not hits, f"{len(hits)} citations of METHOD:\n" + "\n".join(hits[:20])


def test_top_level_files_cite_no_outside_document():
    hits = [f"{name}:{i}" for name in ("README.md", "params.yaml", "dvc.yaml", "pyproject.toml")
            for i, line in enumerate((ROOT / name).read_text().splitlines(), 1) if CITATION.search(line)]
    assert not hits, "\n".join(hits)
