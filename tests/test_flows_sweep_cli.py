"""`sara sweep` without services: one line naming `scripts/services.sh start`; nothing written outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "SARA_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return env


def test_sara_sweep_without_services_says_so_in_one_line(tmp_path: Path) -> None:
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    (repo / "dvc.yaml").write_text("stages: {}\n")
    out = subprocess.run([sys.executable, "-m", "sara.cli", "sweep", "--ops", "and,or"], cwd=repo, env=_env(home),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "scripts/services.sh start" in lines[0], out.stderr
    assert out.stdout == ""
    assert not (home / ".prefect").exists() and list(home.iterdir()) == []


def test_prefect_cli_at_the_repo_root_keeps_its_state_in_the_repo(tmp_path: Path) -> None:
    """pyproject.toml's [tool.prefect] home: `prefect ...` run at the root never creates ~/.prefect."""
    out = subprocess.run([str(Path(sys.executable).parent / "prefect"), "config", "view", "--show-sources"], cwd=ROOT,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "PREFECT_HOME='.prefect'" in out.stdout, out.stdout
    assert not (tmp_path / ".prefect").exists()
