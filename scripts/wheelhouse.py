"""Wheels for an offline GPU machine that already has torch: the smallest folder that completes its environment.

The target machine already holds a Python with torch, transformers, numpy, pandas and many more (listed, one
`name==version` a line, in a preinstalled file). This script walks the project's needs (a requirements file) through
each wheel's `Requires-Dist`, evaluated for the target's Python and platform, and downloads only what the machine
lacks, one version of each package:

- a need the machine already satisfies (its preinstalled version fits the specifier) is skipped;
- a package named in the leave-out file is skipped on purpose (an optional dependency the project never imports;
  the file says why for each);
- a version comes from the pins file when it names the package, else it is the newest that fits;
- a package named in the prefer-pure file comes as its pure-Python wheel (`py3-none-any`) where one is published
  next to the compiled ones: slower C speedups left behind, a smaller file;
- a package published only as an sdist is built here with `pip wheel --no-deps`, and must come out pure Python.

It writes the wheels into the target folder plus `wheels.txt` (name, version, size, who needs it) and prints the
total size. `--check` then asks pip's own resolver whether the folder plus the preinstalled set (as empty stand-in
wheels) installs the needs offline with nothing missing and nothing extra. docs/offline.md shows the whole run.

    python scripts/wheelhouse.py .whl --python-version 3.12 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
        --preinstalled configs/offline/preinstalled.txt --requirements configs/offline/requirements.txt \
        --pins configs/offline/pins.txt --leave-out configs/offline/leave_out.txt \
        --prefer-pure configs/offline/prefer_pure.txt --check
"""

from __future__ import annotations

import argparse
import email.parser
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import parse_tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version


# ---------------------------------------------------------------------------------------------------------------
# Pure logic: list files, the target's marker environment, which needs are already met.


def read_list(path: str | Path | None) -> list[str]:
    """Non-empty lines of a list file, with `#` comments (whole-line or trailing) removed."""
    if path is None:
        return []
    lines = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def parse_preinstalled(lines: list[str]) -> dict[str, Version | None]:
    """`name==version` (or a bare `name`: any version is taken as fitting) -> {canonical name: version}."""
    out: dict[str, Version | None] = {}
    for line in lines:
        name, sep, version = line.partition("==")
        out[canonicalize_name(name.strip())] = Version(version.strip()) if sep else None
    return out


def parse_pins(lines: list[str]) -> dict[str, Version]:
    out = {}
    for line in lines:
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"pins: {line!r} is not name==version")
        out[canonicalize_name(name.strip())] = Version(version.strip())
    return out


def target_environment(python_version: str) -> dict[str, str]:
    """PEP 508 marker variables of a CPython on x86-64 Linux of the given `major.minor` version."""
    major_minor = ".".join(python_version.split(".")[:2])
    full = python_version if python_version.count(".") == 2 else f"{major_minor}.0"
    return {
        "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
        "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
        "platform_system": "Linux", "platform_version": "", "python_full_version": full,
        "python_version": major_minor, "sys_platform": "linux",
    }


def applies(req: Requirement, env: dict[str, str], extras: set[str]) -> bool:
    """Whether a Requires-Dist line applies on the target when the package was asked for with `extras`."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""}))


def met_by_preinstalled(req: Requirement, preinstalled: dict[str, Version | None]) -> bool | None:
    """True: the machine's version fits; False: it has the package at a version that does not fit (a wheel of a
    fitting version must travel); None: the machine lacks it."""
    name = canonicalize_name(req.name)
    if name not in preinstalled:
        return None
    version = preinstalled[name]
    return version is None or req.specifier.contains(version, prereleases=True)


def wheel_requirements(metadata_text: str) -> list[Requirement]:
    message = email.parser.Parser().parsestr(metadata_text)
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


# ---------------------------------------------------------------------------------------------------------------
# Fetching wheels with pip.


@dataclass
class Picked:
    name: str
    version: Version
    path: Path
    needed_by: set[str] = field(default_factory=set)
    built_here: bool = False


def read_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return zf.read(name).decode()


def pip_target_args(python_version: str, platforms: list[str]) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for p in platforms:
        args += ["--platform", p]
    return args


def fetch_wheel(spec: str, python_version: str, platforms: list[str], scratch: Path) -> tuple[Path, bool]:
    """One wheel for `spec` (no dependencies) into `scratch`; built from its sdist when no wheel is published."""
    req = Requirement(spec)
    out = scratch / (canonicalize_name(req.name) + ("-pure" if platforms == ["any"] else ""))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):  # a kept download (--cache) that fits
        if req.specifier.contains(parse_wheel_filename(old.name)[1], prereleases=True):
            return old, (out / ".built").exists()
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *pip_target_args(python_version, platforms),
           "-d", str(out), spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    built = False
    if done.returncode != 0:
        if platforms == ["any"]:
            raise SystemExit(f"{spec}: no pure-Python wheel is published (drop it from the prefer-pure file)")
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), spec],
                               capture_output=True, text=True)
        if build.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise SystemExit(f"{spec}: no wheel for the target ({tail}) and building one failed: "
                             f"{(build.stderr.strip().splitlines() or ['?'])[-1]}")
        built = True
        (out / ".built").touch()
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"{spec}: expected one wheel in {out}, found {[w.name for w in wheels]}")
    if built and not all(t.platform == "any" and t.abi == "none" for t in parse_wheel_filename(wheels[0].name)[3]):
        raise SystemExit(f"{spec}: built {wheels[0].name} here, which is not pure Python: it would not run on the target")
    return wheels[0], built


def collect(needs: list[str], preinstalled: dict[str, Version | None], pins: dict[str, Version], leave_out: set[str],
            python_version: str, platforms: list[str], scratch: Path, prefer_pure: set[str] = frozenset(), log=print,
            fetch=fetch_wheel) -> tuple[dict[str, Picked], dict]:
    """Walk the needs' dependency closure -> ({name: Picked}, {"preinstalled": {name: parents}, "left_out": {name:
    specifiers}}). `fetch(spec, python_version, platforms, scratch) -> (wheel path, built here)` gets one wheel."""
    env = target_environment(python_version)
    picked: dict[str, Picked] = {}
    skipped: dict[str, dict[str, set[str]]] = {"preinstalled": {}, "left_out": {}}
    queue: deque[tuple[Requirement, str]] = deque((Requirement(n), "(needs)") for n in needs)
    extras_seen: dict[str, set[str]] = {}
    while queue:
        req, parent = queue.popleft()
        name = canonicalize_name(req.name)
        if name in leave_out:
            skipped["left_out"].setdefault(name, set()).add(str(req.specifier))
            continue
        met = met_by_preinstalled(req, preinstalled)
        if met:
            skipped["preinstalled"].setdefault(name, set()).add(parent)
            continue
        if met is False:
            log(f"[wheelhouse] {req} (from {parent}): the machine's {name} {preinstalled[name]} does not fit, "
                "a wheel travels")
        new_extras = set(req.extras) - extras_seen.get(name, set())
        if name in picked:
            have = picked[name]
            if not req.specifier.contains(have.version, prereleases=True):
                raise SystemExit(f"{name}: {parent} needs {req}, but {have.version} was picked for "
                                 f"{sorted(have.needed_by)}; pin one version that fits both in the pins file")
            have.needed_by.add(parent)
            if not new_extras:
                continue
        else:
            if name in pins:
                if not req.specifier.contains(pins[name], prereleases=True):
                    raise SystemExit(f"{name}: pinned {pins[name]}, but {parent} needs {req}")
                spec = f"{req.name}=={pins[name]}"
            else:
                spec = f"{req.name}{req.specifier}"
            # `--platform any` matches only py3-none-any wheels: the pure build of a package that also ships compiled ones
            wheel, built = fetch(spec, python_version, ["any"] if name in prefer_pure else platforms, scratch)
            version = parse_wheel_filename(wheel.name)[1]
            picked[name] = Picked(name, version, wheel, {parent}, built)
            log(f"[wheelhouse] {name}=={version} ({wheel.stat().st_size / 1e6:.2f} MB{', built here' if built else ''})"
                f" for {parent}")
        extras_seen.setdefault(name, set()).update(req.extras)
        for dep in wheel_requirements(read_metadata(picked[name].path)):
            if applies(dep, env, extras_seen[name]):
                queue.append((dep, f"{name}=={picked[name].version}"))
    return picked, skipped


# ---------------------------------------------------------------------------------------------------------------
# The check: pip's resolver, offline, against the folder plus stand-ins for what the machine already has.


def stub_wheel(folder: Path, name: str, version: Version, requires: list[str] = ()) -> Path:
    """An empty wheel that only says `name version` (and `requires`): a stand-in for a package the target machine
    already has."""
    dist = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    requires_lines = "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_lines}")
        zf.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def stand_in_version(name: str, specifiers: set[str], pins: dict[str, Version]) -> Version:
    """A version of a left-out package that every need's specifier accepts: its pin, else one the specifiers name."""
    spec = SpecifierSet(",".join(s for s in specifiers if s))
    named = sorted({Version(s.version.rstrip(".*")) for s in spec})
    for version in ([pins[name]] if name in pins else []) + named + [Version("0")]:
        if spec.contains(version, prereleases=True):
            return version
    raise SystemExit(f"{name}: left out, but no version fits {spec} for the check's stand-in: pin one in the pins file")


def check(dest: Path, needs: list[str], preinstalled: dict[str, Version | None], left_out: dict[str, set[str]],
          pins: dict[str, Version], python_version: str, platforms: list[str]) -> list[str]:
    """Problems found by `pip install --dry-run --no-index` of the needs from the folder + stand-ins ([] = none)."""
    with tempfile.TemporaryDirectory() as tmp:
        stubs = Path(tmp) / "stubs"
        stubs.mkdir()
        for name, version in preinstalled.items():
            stub_wheel(stubs, name, version or Version("0"))
        for name, specifiers in left_out.items():
            if name not in preinstalled:
                stub_wheel(stubs, name, stand_in_version(name, specifiers, pins))
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index", "--ignore-installed",
               "--isolated", "--find-links", str(dest), "--find-links", str(stubs), *pip_target_args(python_version, platforms),
               "--target", str(Path(tmp) / "site"), "--report", str(report), *needs]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return [f"pip could not resolve the needs offline: {done.stderr.strip()[-2000:]}"]
        chosen = {canonicalize_name(item["metadata"]["name"]): (item["metadata"]["version"], Path(item["download_info"]["url"]).name)
                  for item in json.loads(report.read_text())["install"]}
    ours = {canonicalize_name(parse_wheel_filename(w.name)[0]): w.name for w in dest.glob("*.whl")}
    problems = [f"{name}: pip picked {version} from {file}, not a wheel of the folder"
                for name, (version, file) in chosen.items() if name not in preinstalled and name not in left_out
                and file != ours.get(name)]
    problems += [f"{name}: pip picked the machine's {chosen[name][0]}, but the folder carries {ours[name]}"
                 for name in ours if name in chosen and chosen[name][1] != ours[name]]
    problems += [f"{file}: in the folder but not needed" for name, file in ours.items() if name not in chosen]
    return problems


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", help="folder to write the wheels into (its old wheels are removed)")
    ap.add_argument("--python-version", required=True, help="the target's Python, e.g. 3.12")
    ap.add_argument("--platform", action="append", required=True, help="a wheel platform tag the target accepts "
                    "(repeat: manylinux_2_28_x86_64, manylinux_2_17_x86_64, ...)")
    ap.add_argument("--preinstalled", required=True, help="what the target already has: name==version a line")
    ap.add_argument("--requirements", required=True, help="the project's needs: one requirement a line")
    ap.add_argument("--pins", default=None, help="name==version a line: the version to take when a package is needed")
    ap.add_argument("--leave-out", default=None, help="package names never to carry (optional deps not imported)")
    ap.add_argument("--prefer-pure", default=None, help="package names to carry as their pure-Python wheel")
    ap.add_argument("--cache", default=None, help="keep downloads and builds here between runs (default: a temp folder)")
    ap.add_argument("--check", action="store_true", help="then resolve the needs offline with pip against the folder")
    args = ap.parse_args(argv)

    for p in args.platform:
        parse_tag(f"py3-none-{p}")  # refuses a malformed tag before any download
    needs = read_list(args.requirements)
    preinstalled = parse_preinstalled(read_list(args.preinstalled))
    pins = parse_pins(read_list(args.pins))
    leave_out = {canonicalize_name(n) for n in read_list(args.leave_out)}
    prefer_pure = {canonicalize_name(n) for n in read_list(args.prefer_pure)}
    dest = Path(args.dest)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.cache) if args.cache else Path(tmp)
        picked, skipped = collect(needs, preinstalled, pins, leave_out, args.python_version, args.platform, scratch,
                                  prefer_pure)
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.whl"):
            old.unlink()
        for p in picked.values():
            shutil.copy2(p.path, dest / p.path.name)
            p.path = dest / p.path.name
    rows = sorted(picked.values(), key=lambda p: -p.path.stat().st_size)
    total = sum(p.path.stat().st_size for p in rows)
    lines = [f"# {len(rows)} wheels, {total / 1e6:.2f} MB, for CPython {args.python_version} on {', '.join(args.platform)}",
             "# name==version  MB  needed by"]
    lines += [f"{p.name}=={p.version}  {p.path.stat().st_size / 1e6:.2f}  {', '.join(sorted(p.needed_by))}"
              f"{'  (built here)' if p.built_here else ''}" for p in rows]
    lines.append("# already on the machine: " + ", ".join(sorted(skipped["preinstalled"])))
    lines.append("# left out on purpose: " + ", ".join(sorted(skipped["left_out"])))
    (dest / "wheels.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[wheelhouse] {len(rows)} wheels in {dest}: {total / 1e6:.2f} MB ({total / 2**20:.2f} MiB)")
    if args.check:
        problems = check(dest, needs, preinstalled, skipped["left_out"], pins, args.python_version, args.platform)
        for problem in problems:
            print(f"[wheelhouse] check: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("[wheelhouse] check: pip resolves the needs offline from the folder and the preinstalled set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
