"""Bad files and failed writes are one line naming the path and the cause (issue: faults, round 2, finding 5).

Before: a truncated `aligner.pt` or `aux.pt` gave torch's "failed finding central directory" in a 29-55-line
traceback with no path, and a full disk while checkpointing gave `unexpected pos 8256 vs 8148`, no path, no cause.
A write that fails is simulated with the kernel's file-size limit (RLIMIT_FSIZE: every write past it fails with
EFBIG, as a full disk fails with ENOSPC), which needs no privileges; the file-system checks use chattr/chmod.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sara.config import params_from_dict
from stage2_testlib import REPO, write_params


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _one_line_naming(msg: str, path: Path) -> None:
    assert "\n" not in msg and str(path) in msg, msg


def test_a_truncated_aligner_is_one_line_naming_the_file(tmp_path: Path):
    from sara.errors import BadFileError
    from sara.models.aligner import SaliencyAligner, load_aligner, save_aligner

    params = params_from_dict({})
    path = save_aligner(tmp_path / "aligner.pt", SaliencyAligner(64, 384, params.aligner), params, {})
    _truncate(path)
    with pytest.raises(BadFileError) as err:
        load_aligner(path)
    _one_line_naming(str(err.value), path)
    assert "cannot be read" in str(err.value) and "rerun train_aligner" in str(err.value)


def test_a_truncated_aux_pt_is_one_line_naming_the_file(tmp_path: Path):
    from sara.errors import BadFileError
    from sara.methods import build_objective
    from sara.runs import Run
    from sara.stages.mechanism import _load_aux

    params = params_from_dict({})
    aux = build_objective(Run.parse("videorepa"), params, 32, 64)
    run_dir = tmp_path / "videorepa"
    run_dir.mkdir()
    torch.save(aux.state_dict(), run_dir / "aux.pt")  # an unsealed folder (no SHA256SUMS): torch reads it
    _truncate(run_dir / "aux.pt")
    with pytest.raises(BadFileError) as err:
        _load_aux(Run.parse("videorepa"), params, run_dir, 32, 64)
    _one_line_naming(str(err.value), run_dir / "aux.pt")


def test_a_write_the_storage_refuses_names_the_path_and_the_cause(tmp_path: Path):
    from sara.errors import WriteFailedError
    from sara.io import writing

    for code in (errno.ENOSPC, errno.EROFS):
        with pytest.raises(WriteFailedError) as err, writing(tmp_path / "out"):
            try:
                raise OSError(code, os.strerror(code))
            except OSError:
                raise RuntimeError("unexpected pos 8256 vs 8148") from None  # what torch raises on top of it
        assert str(err.value) == f"cannot write {tmp_path / 'out'}: {os.strerror(code)}"
    with pytest.raises(ValueError, match="a bug"), writing(tmp_path / "out"):
        raise ValueError("a bug")  # not a storage failure: passes unchanged


def _limited(max_bytes: int):
    """Child setup: writes past `max_bytes` fail with EFBIG (SIGXFSZ ignored, so the write returns the error)."""
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))
    return setup


def _sara_limited(tmp: Path, *args: str, max_bytes: int) -> subprocess.CompletedProcess:
    from stage2_testlib import clean_env

    env = {**clean_env(tmp), "MLFLOW_TRACKING_URI": f"file://{tmp / 'mlruns'}", "MLFLOW_ALLOW_FILE_STORE": "true",
           "PYTHONDONTWRITEBYTECODE": "1"}  # the file store writes small files only: the limit hits the outputs
    return subprocess.run([sys.executable, "-m", "sara.cli", *args], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=600, preexec_fn=_limited(max_bytes))


@pytest.mark.slow
def test_a_checkpoint_the_disk_refuses_is_one_line_naming_the_file(workspace: Path):
    tmp = workspace / "fsize"
    tmp.mkdir()
    params = write_params(tmp, "p", steps=2, checkpoint_every=1)
    r = _sara_limited(tmp, "train-dit", "--params", str(params), "--run", "sft", max_bytes=64 * 1024)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = re.findall(r"error: .*", r.stderr)  # the progress bar may share its line (it ends with \r)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    checkpoint = tmp / "state" / "sft" / "step_0000001" / "mp_rank_00_model_states.pt"
    assert lines[0] == f"error: cannot write {checkpoint}: {os.strerror(errno.EFBIG)}", lines[0]


@pytest.mark.slow
def test_an_output_the_disk_refuses_is_one_line_and_leaves_nothing_behind(tmp_path: Path):
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["dit"]["base_dir"] = str(tmp_path / "models" / "base")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    r = _sara_limited(tmp_path, "init-dit", "--params", str(tmp_path / "p.yaml"), max_bytes=64 * 1024)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == \
        f"error: cannot write {tmp_path / 'models' / 'base'}: {os.strerror(errno.EFBIG)}", r.stderr[-2000:]
    assert list((tmp_path / "models").iterdir()) == []  # no half-written base, no temp folder


def _read_only(folder: Path):
    """Make `folder` refuse new entries: immutable for root (chattr +i), mode 0555 otherwise."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o555)
    return lambda: folder.chmod(0o755)


def test_an_output_folder_that_refuses_writes_is_one_line(tmp_path: Path, tracking, capsys):
    from sara.cli import main

    (tmp_path / "data").mkdir()
    undo = _read_only(tmp_path / "data")
    try:
        import yaml

        raw = {"data": {"out_dir": str(tmp_path / "data" / "clips"), "n_train": 1, "n_heldout": 1}}
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
        assert main(["data", "--params", str(tmp_path / "p.yaml")]) == 2
    finally:
        undo()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: cannot write {tmp_path / 'data' / 'clips'}: "), lines
