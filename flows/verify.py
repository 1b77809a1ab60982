"""`sara verify`: re-hash the workspace's pipeline outputs and DVC's cache, and name every file that changed.

DVC decides what is up to date from file sizes and modification times and trusts its cache objects, so a damaged
object (a flipped byte, a truncated file) is checked out and read as if good. This command hashes the bytes:
  workspace  every output dvc.lock records, against the MD5 it records (a folder: each file against the folder's
             listing in the cache), and every sealed output folder against its SHA256SUMS (`sara.integrity`);
  cache      every object under DVC's cache, against the MD5 it is named by.
One line per damaged file with what to do, then a summary; exit status 1 when anything is damaged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from sara.errors import IntegrityError
from sara.integrity import DIGESTS, verify


def md5_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def cache_dir(repo: Path) -> Path:
    """DVC's local cache of MD5-named objects (`<cache>/files/md5`), wherever the repository's config puts it."""
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        return Path(r.cache.local.path)


def _object(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def locked_outputs(repo: Path) -> Iterator[tuple[str, str, str]]:
    """(stage, output path, recorded md5) of every output dvc.lock records with a DVC 3 MD5."""
    lock = repo / "dvc.lock"
    if not lock.is_file():
        return
    for stage, entry in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).items():
        for out in entry.get("outs", []):
            if out.get("hash") == "md5" and out.get("md5"):
                yield stage, out["path"], out["md5"]


def check_workspace(repo: Path, cache: Path) -> tuple[list[str], int]:
    """(problems, files hashed) of the workspace outputs dvc.lock records."""
    problems: list[str] = []
    hashed = 0
    for stage, rel, md5 in locked_outputs(repo):
        path = repo / rel
        fix = f"`dvc checkout --relink {rel}` (or `dvc repro -f {stage}` if its cache object is damaged too)"
        if not path.exists():
            continue  # not checked out: nothing here to be wrong
        if md5.endswith(".dir"):
            listing = _object(cache, md5)
            entries = json.loads(listing.read_text()) if listing.is_file() else []
            for e in entries:
                f = path / e["relpath"]
                hashed += 1
                if not f.is_file():
                    problems.append(f"{f}: missing from output {rel} of stage {stage}; {fix}")
                elif md5_of(f) != e["md5"]:
                    problems.append(f"{f}: differs from what stage {stage} recorded in dvc.lock; {fix}")
            if (path / DIGESTS).is_file():
                try:
                    verify(path)
                except IntegrityError as err:
                    problems.append(str(err))
        elif path.is_file():
            hashed += 1
            if md5_of(path) != md5:
                problems.append(f"{path}: differs from what stage {stage} recorded in dvc.lock; {fix}")
    return problems, hashed


def check_cache(cache: Path) -> tuple[list[str], int]:
    """(problems, objects hashed): every cache object against the MD5 it is named by."""
    problems: list[str] = []
    hashed = 0
    for obj in sorted(p for p in cache.glob("??/*") if p.is_file()):
        name = obj.parent.name + obj.name.removesuffix(".dir")
        if len(name) != 32 or ".tmp" in obj.name:
            continue  # not an object (DVC's temporary files while it writes one)
        hashed += 1
        if md5_of(obj) != name:
            problems.append(f"{obj}: DVC cache object damaged (its content no longer has the MD5 it is named by); "
                            f"delete it, then `dvc pull` it or `dvc repro -f` the stage that wrote it")
    return problems, hashed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sara verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=Path.cwd(), help="repository root (default: the current directory)")
    ap.add_argument("--no-cache", dest="cache", action="store_false", help="check the workspace only")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    cache = cache_dir(repo)
    problems, n_files = check_workspace(repo, cache)
    n_objects = 0
    if args.cache and cache.is_dir():
        bad, n_objects = check_cache(cache)
        problems += bad
    for line in problems:
        print(f"damaged: {line}", file=sys.stderr)
    print(f"[verify] {n_files} workspace files and {n_objects} cache objects hashed: "
          + (f"{len(problems)} damaged" if problems else "all intact"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
