"""File helpers shared by every stage: atomic output folders and JSON files, failures named by path and cause.

A stage builds its output under a temporary sibling name, seals it with content digests (`sara.integrity`) and
renames it into place only when it succeeded, so an error never leaves a half-written output behind; temporary
siblings left by a killed process are removed by the next build of the same output.

A write that fails (no space left, a read-only or full file system) or a file that cannot be read (truncated,
damaged) is one `WriteFailedError` / `BadFileError` line naming the path and the cause (`writing`, `reading`,
`load_tensors`), not a library's traceback without a path (torch: `unexpected pos 8256 vs 8148`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sara.errors import BadFileError, InputError, RunStateBusyError, WriteFailedError

# errno values that mean "the storage refused the write", whichever library hit them
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")  # how Rust libraries (safetensors) report an errno


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_sibling(out: Path) -> Path:
    """`<parent>/.<name>.tmp<pid>`: where an output is built before it is renamed into place."""
    return out.with_name(f".{out.name}.tmp{os.getpid()}")


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Remove temporary siblings of `out` left by processes that are gone (kill -9 while building it)."""
    out = Path(out)
    removed = []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.tmp(\d+)$")
    for p in out.parent.glob(f".{out.name}.tmp*") if out.parent.is_dir() else []:
        m = pattern.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary sibling name; when the body succeeds, seal it (`SHA256SUMS`) and rename
    it into place. A failed write is one WriteFailedError naming `out` and the cause."""
    from sara.integrity import seal

    out = Path(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        tmp = temp_sibling(out)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            yield tmp
            seal(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> None:
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys, default=_default) + "\n")
        os.replace(tmp, path)


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Failures named by path and cause
# ----------------------------------------------------------------------------------------------------------------


def _chain(err: BaseException) -> Iterator[BaseException]:
    """`err` and the exceptions it was raised from or while handling (torch raises its own error while closing a
    file whose write failed: the OSError is in the chain, not on top)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _storage_problem(path: Path) -> str | None:
    """What is wrong with the file system `path` lives on, if anything: full or read-only."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if st.f_bavail * st.f_frsize < 2**20:  # under 1 MiB left: the write that failed ran out of space
        return os.strerror(errno.ENOSPC)
    return None


def write_failure_cause(err: BaseException, path: Path) -> str | None:
    """Why writing `path` failed, when `err` is a storage failure (else None: a bug or a bad input)."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return os.strerror(e.errno)
        m = _OS_ERROR_IN_TEXT.search(str(e))
        if m and int(m.group(1)) in WRITE_ERRNOS:
            return os.strerror(int(m.group(1)))
        if isinstance(e, PermissionError) and e.filename and str(e.filename).startswith(str(path.parent)):
            return f"{e.strerror}: {e.filename}"
    return _storage_problem(path)


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a storage failure while writing `path` (no space, quota, read-only, file too large) into one
    WriteFailedError line naming `path` and the cause; any other error passes unchanged."""
    path = Path(path)
    try:
        yield
    except (InputError, KeyboardInterrupt):
        raise
    except Exception as err:
        cause = write_failure_cause(err, path)
        if cause is None:
            raise
        raise WriteFailedError(f"cannot write {path}: {cause}") from err


def _read_cause(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)  # torch's C++ source location
    return text[:200]


@contextmanager
def reading(path: str | Path, fix: str) -> Iterator[None]:
    """Turn a failure to read or decode `path` (truncated, damaged, unreadable) into one BadFileError line naming
    the path, the cause and `fix` (how to get a good copy)."""
    import pickle

    try:
        yield
    except (InputError, KeyboardInterrupt):
        raise
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as err:
        if isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err):
            raise  # code inside a weights file is refused loudly, not reported as a damaged file
        raise BadFileError(f"{path}: cannot be read ({_read_cause(err)}); {fix}") from err
    except Exception as err:  # safetensors' and other libraries' own error types
        if type(err).__name__ not in ("SafetensorError", "HeaderTooLarge", "JSONDecodeError"):
            raise
        raise BadFileError(f"{path}: cannot be read ({_read_cause(err)}); {fix}") from err


def load_tensors(path: str | Path, fix: str) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU: tensors and plain containers only, never code; a damaged
    file is one BadFileError line (see `reading`)."""
    import torch

    from sara.integrity import verify_file

    verify_file(path)
    with reading(path, fix):
        return torch.load(path, map_location="cpu", weights_only=True)


def save_tensors(obj: Any, path: str | Path) -> None:
    """`torch.save` through a Python file object, so a failed write raises the kernel's OSError (no space, ...)
    rather than torch's `unexpected pos`; one WriteFailedError line names the path and the cause."""
    import torch

    path = Path(path)
    with writing(path), open(path, "wb") as fh:
        torch.save(obj, fh)


@contextmanager
def python_file_saves() -> Iterator[None]:
    """Inside the block, every `torch.save(obj, <path>)` (DeepSpeed's checkpoint writes) goes through
    `save_tensors`, so a full disk names the file and says so."""
    import torch

    original = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(f, (str, os.PathLike)):
            return original(obj, f, *args, **kwargs)
        with writing(f), open(f, "wb") as fh:
            original(obj, fh, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


# ----------------------------------------------------------------------------------------------------------------
# One owner per run state
# ----------------------------------------------------------------------------------------------------------------


@contextmanager
def exclusive(state_dir: str | Path, what: str) -> Iterator[None]:
    """Hold `<state_dir>.lock` for the block: a second process that wants the same run state is refused at once
    with one line naming the holder's pid, instead of training into the same checkpoints. The lock is the
    kernel's (flock): it dies with its process, so a killed trainer never leaves it held."""
    from filelock import FileLock, Timeout

    state_dir = Path(state_dir)
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{state_dir}.lock", thread_local=False)
    owner = Path(f"{state_dir}.owner")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "unknown"
        raise RunStateBusyError(f"{what}: {state_dir} is in use by another live process (pid {holder}); wait for it "
                                f"or stop it before starting this one") from None
    try:
        owner.write_text(f"{os.getpid()}\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
