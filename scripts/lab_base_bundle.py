"""A trained lab base carried to another machine: the base stages' outputs in one file, checked and frozen there.

    python scripts/lab_base_bundle.py pack WORK BUNDLE.tar [--stages init_dit,train_aligner,eval_aligner]
    python scripts/lab_base_bundle.py unpack BUNDLE.tar WORK
    python scripts/lab_base_bundle.py id BUNDLE.tar      # the base's identity, as base_origin.json holds it

Why: the lab's base (corpus, VAE, encoder, base DiT, clips, Stage 1 aligner) is about half of a lab run's GPU time
(docs/lab/comparison.md), and every Stage 2 replicate that should share a base has to be trained where that base
is. Between machines that share storage, `dvc push` / `dvc pull` to a DVC remote is the way; this is for a machine
that reaches none, and for a corpus too large to carry (8,192 clips): only the base's outputs travel, and on the
other machine the base stages are frozen (`dvc freeze`), so DVC neither reruns them nor needs their inputs.

pack: the `--stages` and every stage upstream of them in WORK's dvc.yaml are the base. Of their outputs, those a
stage outside the base reads (the clips, the masks, the encoder, the base DiT, the aligner; not the corpus, not the
encoder's feature cache) go into
BUNDLE (a file whose bytes another already holds, as the base DiT's two experts, as a link to it) with
bundle.json: the base stages, and for each the params values it lists and the sha256 of each source
file or folder it depends on.

unpack: WORK (a checkout with dvc.yaml written for its params) must list the same base stages, each listing the same
params keys with the same values, and the same sources, and every packed file must arrive with the bytes it had (bundle.json holds each one's sha256);
the first difference is one error line naming the stage and the key, or the file, and nothing is written. Then the outputs are extracted (replacing any there) and the base stages frozen: `sara repro` plans
around them (flows/repro.py) and the stages below them run as usual. The carried outputs live in the work folder
only, not in DVC's cache and dvc.lock (`dvc commit` of a frozen stage needs its absent inputs): `sara repro` and
`dvc repro` there use them; `dvc exp run --temp` checks outputs out of the cache, so the ablation sweep refuses a
DAG with frozen stages (flows/plan.py).

Both write WORK/base_origin.json: the base's identity (the sha256 of bundle.json, which holds every packed file's
sha256) and its outputs. scripts/lab_collect.sh returns it with the results, and `scripts/lab_merge_seeds.py
--same-base` merges two runs' rows into one replicate only when both name the same base.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sara.integrity import file_digest  # noqa: E402 - the project's SHA-256 of a file, as its stage seals use

# the base DiT and the Stage 1 aligner with all they need, and the aligner's evaluation: the encoder's feature cache
# is read by it alone (larger than the clips), so with it in the base the cache stays behind
DEFAULT_STAGES = ("init_dit", "train_aligner", "eval_aligner")
MANIFEST = "bundle.json"
ORIGIN = "base_origin.json"  # in the work folder: which base its stages below the base were trained on


class BundleError(ValueError):
    """A bundle that does not fit the checkout, or a checkout that cannot be packed: one line."""


def _stages(work: Path) -> dict[str, dict]:
    path = work / "dvc.yaml"
    if not path.is_file():
        raise BundleError(f"{path} not found: run `python -m sara.pipeline` in {work} first")
    return (yaml.safe_load(path.read_text()) or {}).get("stages") or {}


def _paths(entries: list | None) -> list[str]:
    """dvc.yaml deps or outs: plain paths, or one-key mappings (an out with options)."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def _params(entries: list | None) -> list[str]:
    """dvc.yaml params of params.yaml: keys, or `{params.yaml: [keys]}`."""
    keys: list[str] = []
    for e in entries or []:
        if isinstance(e, str):
            keys.append(e)
        else:
            keys.extend(k for f, ks in e.items() if f == "params.yaml" for k in ks)
    return keys


def base_stages(stages: dict[str, dict], roots: list[str]) -> list[str]:
    """`roots` and every stage upstream of them, in dvc.yaml's order."""
    producer = {out: name for name, s in stages.items() for out in _paths(s.get("outs"))}
    missing = [r for r in roots if r not in stages]
    if missing:
        raise BundleError(f"no stage named {missing[0]!r} in dvc.yaml")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [producer[d] for d in _paths(stages[name].get("deps")) if d in producer]
    return [name for name in stages if name in seen]


def carried_outputs(stages: dict[str, dict], base: list[str]) -> list[str]:
    """The base's outputs that a stage outside the base reads."""
    outs = [o for name in base for o in _paths(stages[name].get("outs"))]
    read = {d for name, s in stages.items() if name not in base for d in _paths(s.get("deps"))}
    return [o for o in outs if o in read]


def _lookup(params: dict, key: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def path_digest(path: Path) -> str:
    """sha256 of a file's bytes; of a folder, over its files' relative paths and digests (sorted)."""
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(f"{f.relative_to(path).as_posix()}\0{path_digest(f)}\n".encode())
    return h.hexdigest()


def describe(work: Path, stages: dict[str, dict], base: list[str]) -> dict[str, dict]:
    """Per base stage: the params values it lists and the digest of each source it depends on (the outputs of
    other stages excluded: they are the base itself)."""
    params = yaml.safe_load((work / "params.yaml").read_text()) or {}
    produced = {out for s in stages.values() for out in _paths(s.get("outs"))}
    out: dict[str, dict] = {}
    for name in base:
        sources = {}
        for dep in _paths(stages[name].get("deps")):
            if dep in produced:
                continue
            if not (work / dep).exists():
                raise BundleError(f"{work / dep}: a source of stage {name} is missing")
            sources[dep] = path_digest(work / dep)
        out[name] = {"params": {k: _lookup(params, k) for k in _params(stages[name].get("params"))},
                     "sources": sources}
    return out


def base_id(manifest_bytes: bytes) -> str:
    """A base's identity: the sha256 of its bundle.json, whose entries are every packed file's sha256."""
    return hashlib.sha256(manifest_bytes).hexdigest()


def write_origin(work: Path, manifest_bytes: bytes, bundle: Path) -> None:
    outputs = json.loads(manifest_bytes)["outputs"]
    record = {"base": base_id(manifest_bytes), "bundle": bundle.name, "outputs": outputs}
    (work / ORIGIN).write_text(json.dumps(record, indent=1) + "\n")


def bundle_id(bundle: Path) -> str:
    if not bundle.is_file():
        raise BundleError(f"{bundle}: no such bundle")
    with tarfile.open(bundle) as tar:
        return base_id(tar.extractfile(MANIFEST).read())


def pack(work: Path, bundle: Path, roots: list[str]) -> list[str]:
    stages = _stages(work)
    base = base_stages(stages, roots)
    outs = carried_outputs(stages, base)
    absent = [o for o in outs if not (work / o).exists()]
    if absent:
        raise BundleError(f"{work / absent[0]}: the base is not built (run `sara repro {' '.join(roots)}` first)")
    files = {}  # every packed file's sha256: unpack checks the bytes that arrived before it writes anything
    for o in outs:
        for path in [work / o] if (work / o).is_file() else sorted(p for p in (work / o).rglob("*") if p.is_file()):
            files[path.relative_to(work).as_posix()] = path_digest(path)
    manifest = {"stages": describe(work, stages, base), "outputs": outs, "files": files}
    bundle.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with tarfile.open(bundle, "w") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        first_of: dict[str, str] = {}  # sha256 -> the member that holds those bytes
        for name, digest in files.items():
            if digest in first_of:  # the same bytes again (the base's two experts): a link, not a copy
                link = tarfile.TarInfo(name)
                link.type, link.linkname = tarfile.LNKTYPE, first_of[digest]
                tar.addfile(link)
            else:
                first_of[digest] = name
                tar.add(work / name, arcname=name)
    write_origin(work, data, bundle)  # the runs below this base, here, are trained on the packed one
    return outs


def verify(tar: tarfile.TarFile, manifest: dict, bundle: Path) -> None:
    """Raise BundleError naming the first packed file that is missing or whose bytes differ from when packed (a
    part lost or damaged on the way); reads the bundle only."""
    members = {m.name: m for m in tar.getmembers()}
    for name, digest in manifest["files"].items():
        member = members.get(name)
        if member is not None and member.islnk():
            member = members.get(member.linkname)
        if member is None or not member.isfile():
            raise BundleError(f"{bundle}: {name} is missing from the bundle: carry it again")
        if hashlib.file_digest(tar.extractfile(member), "sha256").hexdigest() != digest:
            raise BundleError(f"{bundle}: {name} is damaged (its sha256 differs from the packed file's): "
                              "carry it again")


def check(manifest: dict, work: Path, bundle: Path) -> None:
    """Raise BundleError naming the first base stage whose params or sources differ in `work`."""
    stages = _stages(work)
    here = describe(work, stages, [s for s in manifest["stages"] if s in stages])
    for name, built in manifest["stages"].items():
        if name not in here:
            raise BundleError(f"{bundle}: stage {name} is not in {work / 'dvc.yaml'}")
        listed, was = sorted(here[name]["params"]), sorted(built["params"])
        if listed != was:  # the stage reads other keys now (its code changed): a key it gained has no built value
            raise BundleError(f"{bundle}: {name} lists the params {listed} here; it was built listing {was}")
        for key, value in built["params"].items():
            if here[name]["params"].get(key) != value:
                raise BundleError(f"{bundle}: {name} was built with {key} = {value!r}; {work / 'params.yaml'} "
                                  f"has {here[name]['params'].get(key)!r}")
        for src, digest in built["sources"].items():
            if here[name]["sources"].get(src) != digest:
                raise BundleError(f"{bundle}: {name} was built from another {src} than {work / src}")


def unpack(bundle: Path, work: Path) -> dict:
    if not bundle.is_file():
        raise BundleError(f"{bundle}: no such bundle")
    with tarfile.open(bundle) as tar:
        manifest_bytes = tar.extractfile(MANIFEST).read()
        manifest = json.loads(manifest_bytes)
        check(manifest, work, bundle)
        verify(tar, manifest, bundle)
        for o in manifest["outputs"]:
            target = work / o
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        members = [m for m in tar.getmembers() if m.name != MANIFEST]
        tar.extractall(work, members=members, filter="data")
    subprocess.run([sys.executable, "-m", "dvc", "freeze", "-q", *manifest["stages"]], cwd=work, check=True,
                   capture_output=True, text=True)
    write_origin(work, manifest_bytes, bundle)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="WORK's base outputs into BUNDLE")
    p.add_argument("work", type=Path)
    p.add_argument("bundle", type=Path)
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help="the base's last stages; every stage upstream of them is part of the base")
    u = sub.add_parser("unpack", help="BUNDLE into WORK, checked against its params and sources, then frozen")
    u.add_argument("bundle", type=Path)
    u.add_argument("work", type=Path)
    i = sub.add_parser("id", help="BUNDLE's base identity (the `base` of base_origin.json)")
    i.add_argument("bundle", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.command == "id":
            print(bundle_id(args.bundle))
        elif args.command == "pack":
            outs = pack(args.work, args.bundle, [s for s in args.stages.split(",") if s])
            size = args.bundle.stat().st_size / 2**20
            print(f"wrote {args.bundle} ({size:.1f} MiB): {', '.join(outs)}")
        else:
            manifest = unpack(args.bundle, args.work)
            print(f"unpacked {', '.join(manifest['outputs'])} into {args.work}; "
                  f"frozen: {', '.join(manifest['stages'])}")
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (tarfile.TarError, KeyError, EOFError) as err:  # a bundle cut short (a part missing) or not one at all
        where = args.bundle
        print(f"error: {where}: not a whole bundle ({type(err).__name__}: {err}): carry every part again",
              file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"error: dvc freeze failed in {args.work}: {(err.stderr or '').strip().splitlines()[-1:]}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
