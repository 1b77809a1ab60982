"""Content digests of the pipeline's outputs: written when an output is exported, checked when it is read.

DVC trusts its cache: a damaged cache object (a flipped byte, a truncated file) is checked out, hashed by mtime
and read as if good. So every output folder a stage builds (`sara.io.atomic_dir`, Stage 2's `export_final`)
ends with `SHA256SUMS`, the SHA-256 of each of its files in `sha256sum` format (`sha256sum -c SHA256SUMS` checks
it by hand), and every reader of a model, feature or sample output calls `verify` (a folder) or `verify_file`
(one file of a sealed folder) first. A mismatch is one line naming the file and the fix.

A folder without `SHA256SUMS` was not written by a stage (a test fixture, local weights): it is read as it is.
Files a sealed folder does not list are not vouched for, and are not refused either. `sara verify` re-hashes the
whole workspace and DVC's cache (flows/verify.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sara.errors import IntegrityError

DIGESTS = "SHA256SUMS"
_verified: dict[str, tuple[int, int, int]] = {}  # file -> (size, mtime_ns, inode) when it last matched its digest
_lists: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}  # SHA256SUMS -> (its stamp, its entries)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def seal(folder: str | Path) -> Path:
    """Write `<folder>/SHA256SUMS` listing every file below `folder` (sorted, relative POSIX paths)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != DIGESTS)
    lines = [f"{file_digest(p)}  {p.relative_to(folder).as_posix()}\n" for p in files]
    out = folder / DIGESTS
    tmp = out.with_name(f".{DIGESTS}.tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, out)
    return out


def read_digests(folder: str | Path) -> dict[str, str] | None:
    """{relative path: sha256} of a sealed folder, or None when it has no `SHA256SUMS`."""
    path = Path(folder) / DIGESTS
    try:
        stamp = _stamp(path.stat())
    except FileNotFoundError:
        return None
    key = str(path.resolve())
    if key in _lists and _lists[key][0] == stamp:
        return _lists[key][1]
    digests: dict[str, str] = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path}: cannot be read ({err}); {_fix(folder)}") from None
    for n, line in enumerate(text.splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel:
            raise IntegrityError(f"{path}: line {n} is not '<sha256>  <file>' (the digest list is damaged); "
                                 f"{_fix(folder)}")
        digests[rel] = digest
    _lists[key] = (stamp, digests)
    return digests


def _fix(folder: str | Path) -> str:
    return (f"restore the output: `dvc checkout --relink {folder}`, or rerun the stage that writes it "
            f"(`dvc repro -f <stage>`) when `sara verify` finds DVC's cache damaged too")


def _check(path: Path, expected: str, folder: Path) -> None:
    """Compare one file with its digest (once per process while the file is unchanged)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IntegrityError(f"{path}: missing, but {folder / DIGESTS} lists it; {_fix(folder)}") from None
    key, stamp = str(path.resolve()), _stamp(st)
    if _verified.get(key) == stamp:
        return
    if file_digest(path) != expected:
        raise IntegrityError(f"{path}: content does not match its digest in {folder / DIGESTS} (damaged since it "
                             f"was exported); {_fix(folder)}")
    _verified[key] = stamp


def verify(folder: str | Path) -> None:
    """Check every file a sealed folder lists; raise IntegrityError (one line) at the first mismatch."""
    folder = Path(folder)
    digests = read_digests(folder)
    for rel, expected in (digests or {}).items():
        _check(folder / rel, expected, folder)


def sealed_root(path: str | Path, levels: int = 3) -> Path | None:
    """The nearest folder at most `levels` up from `path` that holds `SHA256SUMS`."""
    for parent in list(Path(path).parents)[:levels]:
        if (parent / DIGESTS).is_file():
            return parent
    return None


def verify_file(path: str | Path) -> None:
    """Check one file against the digest of the sealed folder it belongs to (no-op outside a sealed folder, or
    for a file that folder does not list)."""
    path = Path(path)
    root = sealed_root(path)
    if root is None:
        return
    expected = (read_digests(root) or {}).get(path.relative_to(root).as_posix())
    if expected is not None:
        _check(path, expected, root)
