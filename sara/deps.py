"""What a computation depends on: the first-party import closure of a module, and content digests.

`import_closure("sara/stages/train_dit.py")` is every first-party file (`sara/`, `evaluation/`) that module can
import, statically (every `import` / `from ... import` anywhere in a file, function bodies included, since the
project imports heavy modules lazily) or at run time (`RUNTIME_DEPS`: files a module opens, runs as a subprocess
or imports by name). dvc.yaml's code deps are this closure (`python -m sara.pipeline` writes them) and Stage 2's
resume fingerprint hashes it, so a code change always reruns what it affects and never resumes stale state.

`NEUTRAL` is the one list of modules that cannot change any stage's outputs. They are never deps and their own
imports are not followed. A package marker (`__init__.py` holding nothing but a docstring) is neutral too;
tests/test_pipeline.py checks that every marker treated so stays empty.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the source tree (the repository root)
FIRST_PARTY = ("sara", "evaluation")

# Modules that cannot change a stage's outputs (never deps; their imports are not followed).
NEUTRAL: dict[str, str] = {
    "sara/__init__.py": "applies sara/env.py at import; no computation",
    "sara/cli.py": "argument parsing and dispatch to sara/stages/<stage>.py",
    "sara/warm.py": "runs a stage's process forked from one that has imported the libraries; no computation",
    "sara/env.py": "offline / quiet environment defaults and where the MLflow store lives",
    "sara/tracking.py": "MLflow logging of params, metrics and artifacts (never read back by a stage)",
    "sara/stages/validation_log.py": "MLflow logging of Stage 2 validation videos and their grounded scores",
    "sara/deps.py": "this file: dependency bookkeeping",
    "sara/pipeline.py": "writes dvc.yaml",
}

# Files a module reads, runs or imports by name at run time, which the import statements do not show.
# A first-party .py file here is followed like an import.
RUNTIME_DEPS: dict[str, tuple[str, ...]] = {
    "sara/train/engine.py": ("configs/deepspeed",),  # DeepSpeed JSON config per ZeRO stage
    "sara/data/prompts/__init__.py": ("sara/data/prompts",),  # the prompt-set JSON files next to it
    "sara/data/prompts/heldout.py": ("sara/data/prompts",),  # writes heldout.json there
    "evaluation/vbench/runner.py": ("evaluation/vbench/worker.py",),  # run as a script in the VBench venv
    "evaluation/vbench/env.py": ("scripts/torchvision_cpu_hook.py",),  # copied into the VBench venv
}


def module_file(name: str, root: Path = ROOT) -> str | None:
    """`sara.models.dit` -> `sara/models/dit.py` (or the package's `__init__.py`); None when not first-party."""
    if name.split(".")[0] not in FIRST_PARTY:
        return None
    base = root / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand.relative_to(root).as_posix()
    return None


def _package_inits(rel: str, root: Path) -> list[str]:
    """`sara/models/dit.py` -> [`sara/__init__.py`, `sara/models/__init__.py`]: importing a module runs them."""
    parts = Path(rel).parts[:-1]
    return [Path(*parts[: i + 1], "__init__.py").as_posix() for i in range(len(parts))
            if (root / Path(*parts[: i + 1], "__init__.py")).is_file()]


def is_marker(rel: str, root: Path = ROOT) -> bool:
    """An `__init__.py` with no statement but a docstring: importing it cannot change anything."""
    if Path(rel).name != "__init__.py":
        return False
    body = ast.parse((root / rel).read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def imported_modules(rel: str, root: Path = ROOT) -> set[str]:
    """First-party files named by the import statements of one file (anywhere in it)."""
    tree = ast.parse((root / rel).read_text(), rel)
    package = Path(rel).parent.parts if Path(rel).name == "__init__.py" else Path(rel).parent.parts
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this file's package
                base = ".".join(package[: len(package) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names = [mod, *(f"{mod}.{a.name}" for a in node.names)]  # `from pkg import module` imports a module
        for name in names:
            f = module_file(name, root)
            if f is not None:
                out.add(f)
    return out


def import_closure(entry: str, root: Path = ROOT) -> list[str]:
    """Sorted first-party files (and runtime deps) `entry` can import, the entry included, neutral ones left out."""
    return sorted(_closure(entry, root))


@lru_cache(maxsize=None)
def _closure_cached(entry: str, root: Path) -> frozenset[str]:
    return frozenset(_walk(entry, root))


def _closure(entry: str, root: Path) -> frozenset[str]:
    return _closure_cached(entry, root) if root == ROOT else frozenset(_walk(entry, root))


def _walk(entry: str, root: Path) -> set[str]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if not rel.endswith(".py") or rel in NEUTRAL or is_marker(rel, root):
            continue
        todo.extend(imported_modules(rel, root))
        todo.extend(_package_inits(rel, root))
        todo.extend(RUNTIME_DEPS.get(rel, ()))
    kept = {r for r in seen if r not in NEUTRAL and not (r.endswith(".py") and is_marker(r, root))}
    return {r for r in kept if not any(r != d and r.startswith(d + "/") for d in kept)}  # a listed folder covers its files


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(path: str | Path) -> str:
    """Content hash of a file or a folder (relative paths and bytes of every file); `absent` when missing."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        return "absent"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + file_digest(f).encode() + b"\n")
    return h.hexdigest()


def code_digest(entry: str, root: Path = ROOT) -> str:
    """Content hash of `entry`'s import closure: changes whenever code the entry can run changes."""
    h = hashlib.sha256()
    for rel in import_closure(entry, root):
        h.update(rel.encode() + b"\0" + tree_digest(root / rel).encode() + b"\n")
    return h.hexdigest()
