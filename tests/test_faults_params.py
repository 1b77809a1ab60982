"""The whole params file is validated before any stage runs (issue: faults, round 2, findings 7 and 5).

Before: a misspelt section (`trian: {steps: 10}`) passed `dvc repro` and `sara repro` as "up to date" (no stage
lists an unknown section), DVC deleted a stage's uncached outputs before that stage refused a bad value, and a YAML
syntax error pointed at `"<unicode string>" line 117`. Now the `check_params` stage tracks every key and runs first,
`sara repro` validates the file before it plans, and a syntax error names the file and the line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sara.config import ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]
MISSPELT = "\ntrian:\n  steps: 10\n"


def test_check_params_is_the_first_stage_tracks_every_key_and_nothing_depends_on_it():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    name, check = next(iter(stages.items()))
    assert name == "check_params" and check["cmd"] == "sara check-params"
    assert check["params"] == [{"params.yaml": None}]  # the whole file, not sections
    assert "outs" not in check and "metrics" not in check
    assert not any(d.startswith(("data/", "models/", "outputs/")) for d in check["deps"])  # reads no output


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path, capsys):
    from sara.cli import main

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  steps: 4\n  lr: [1e-4\nsample:\n  steps: 2\n")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: not valid YAML at line ") and "\n" not in str(err.value)
    assert main(["check-params", "--params", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "<unicode string>" not in lines[0], lines


def test_a_misspelt_section_is_refused_by_the_check_stage(tmp_path: Path, capsys):
    from sara.cli import main

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text() + MISSPELT)
    assert main(["check-params", "--params", str(path)]) == 2
    assert "trian: unknown key" in capsys.readouterr().err


def test_sara_repro_refuses_a_misspelt_section_in_one_line_before_any_work(tmp_path: Path, capsys):
    from flows.repro import main
    from flows_testlib import make_toy_repo

    repo = make_toy_repo(tmp_path / "repo", REPO / "params.yaml")
    (repo / "params.yaml").write_text((REPO / "params.yaml").read_text() + MISSPELT)
    assert main(["--repo", str(repo), "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trian: unknown key" in err[0], err
    assert not (repo / "tmp" / "repro_logs").exists() and not (repo / "data").exists()  # nothing ran


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_dvc_repro_stops_at_the_check_before_any_output_is_deleted(tmp_path: Path):
    """The real check_params stage (its command, its whole-file params) beside a stage with an uncached metrics
    file: a misspelt section or a bad value stops `dvc repro` at the check, and the metrics file survives."""
    from flows_testlib import init_repo
    from sara.pipeline import stages

    check = stages(load_params(REPO / "params.yaml"))[0]
    assert check.name == "check_params"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text((REPO / "params.yaml").read_text())
    spec = {
        "check_params": {"cmd": f"{sys.executable} -m sara.cli check-params", "params": check.as_dict()["params"]},
        "evaluate": {"cmd": "echo '{\"score\": 1}' > score.json", "params": ["train"],
                     "metrics": [{"score.json": {"cache": False}}]},
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": spec}, sort_keys=False))
    init_repo(repo)
    first = _dvc(repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "score.json").is_file()

    good = (repo / "params.yaml").read_text()
    for bad, message in ((good + MISSPELT, "trian: unknown key"),
                         (good.replace("\ntrain:\n  steps: ", "\ntrain:\n  steps: -1 #", 1), "train.steps: must be >")):
        (repo / "params.yaml").write_text(bad)
        r = _dvc(repo, "repro")
        assert r.returncode != 0 and message in r.stdout + r.stderr, r.stdout + r.stderr
        assert "Running stage 'evaluate'" not in r.stdout
        assert (repo / "score.json").is_file()  # the uncached output of the next stage was not deleted
