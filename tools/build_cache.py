#!/usr/bin/env python3
"""Keeps a cargo target directory outside the clone reusable by the next fresh clone.

`make test` with CI=true builds into $IMGPIPE_CACHE/target (docs/development.md, "Build cache and
test tiers"). Cargo decides what to rebuild by comparing each source file's mtime with the time it
last compiled it, and a fresh clone gives every file the time of the clone: everything of ours
would rebuild. So before each build `prepare` does three things:

1. bounds the cache: when it holds more than IMGPIPE_CACHE_MAX_GB (default 20) it is emptied and
   this build is a cold one;
2. gives each tracked file whose content is the same as when the cache last saw it (git blob id)
   the mtime it had then, which is older than what cargo built from it: no rebuild. A changed or
   new file keeps the clone's time, newer than anything in the cache: cargo rebuilds what uses it.
   It is a content check, as `-Zchecksum-freshness` would be, so an older commit with other
   contents is never taken for a cached one;
3. records the blob id and mtime of every tracked file for the next run.

Only the working tree's own contents are hashed, so uncommitted edits count as changes. Outside a
git checkout every file is touched instead: all of our crates rebuild, nothing stale is reused. `clean`
empties the cache (`make clean-cache`; the lint tools in $IMGPIPE_CACHE/tools stay).

A crate compiled in another clone is reused only if it bakes no path of that clone into itself:
`check-sources` (run by `make check` and `make test`) fails, in the workspace's crates, on
`env!("CARGO_MANIFEST_DIR")` (read it at run time: cargo sets it for tests and benches) and on
`include!`/`include_str!`/`include_bytes!` or `#[path]` of a file outside the crate (cargo records
such a file by its absolute path in the old clone). Only builds that go through `make`, which runs
`prepare` first, may use the cache, one at a time (CI runs one after another on a machine).

    usage: build_cache.py prepare | clean | size | check-sources
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAX_GB = 20.0


def cache_dir() -> Path:
    explicit = os.environ.get("IMGPIPE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgpipe"


def target_dir() -> Path | None:
    """The cache's target directory: CARGO_TARGET_DIR when the Makefile set IMGPIPE_BUILD_CACHE=1
    (CI=true) and it lives outside this clone, else None (nothing to do). A target directory a
    developer shares by hand is left alone: restoring mtimes there could hide an edit that was
    built and then undone."""
    if os.environ.get("IMGPIPE_BUILD_CACHE") != "1":
        return None
    value = os.environ.get("CARGO_TARGET_DIR")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = ROOT / path
    path = path.resolve()
    if path == ROOT or ROOT in path.parents:
        return None
    return path


def size_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def blob_id(data: bytes) -> str:
    """git's object id of a blob with these contents (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p]


def read_manifest(path: Path) -> dict[str, tuple[str, int]]:
    entries: dict[str, tuple[str, int]] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return entries
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].isdigit():
            entries[parts[0]] = (parts[1], int(parts[2]))
    return entries


def restore_mtimes(manifest: Path, root: Path = ROOT) -> tuple[int, int]:
    """Steps 2 and 3 for the clone at `root`. Returns (files given their cached mtime, files left
    with their own)."""
    known = read_manifest(manifest)
    kept = changed = 0
    lines = []
    for rel in tracked_files(root):
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        blob = blob_id(path.read_bytes())
        previous = known.get(rel)
        if previous and previous[0] == blob:
            os.utime(path, ns=(previous[1], previous[1]))
            kept += 1
        else:
            changed += 1
        lines.append(f"{rel}\t{blob}\t{path.stat().st_mtime_ns}")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(manifest)
    return kept, changed


def touch_everything(root: Path) -> int:
    """Sets every file under `root` (but build output, git, venvs) to now; returns how many."""
    skip = {"target", ".git", ".venv", "node_modules", ".tools", ".localstack"}
    count = 0
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.utime(path)
                count += 1
    return count


def prepare() -> int:
    target = target_dir()
    if target is None:
        print("build cache: not in use (CI=true turns it on); nothing to prepare")
        return 0
    limit = float(os.environ.get("IMGPIPE_CACHE_MAX_GB") or DEFAULT_MAX_GB)
    manifest = target / "imgpipe-mtimes.tsv"
    started = time.monotonic()
    if target.exists():
        used = size_bytes(target)
        if used > limit * 1e9:
            print(f"build cache: {target} holds {used / 1e9:.1f} GB, over IMGPIPE_CACHE_MAX_GB={limit:g}: emptied, this build is cold")
            shutil.rmtree(target)
        else:
            print(f"build cache: {target} holds {used / 1e9:.1f} GB (cap {limit:g} GB)")
    else:
        print(f"build cache: {target} is empty: this build is cold")
    try:
        kept, changed = restore_mtimes(manifest)
    except (OSError, subprocess.CalledProcessError) as e:
        # Not a git checkout (a tarball may carry old mtimes that would pass for cached ones):
        # every file is made newer than the cache, so cargo rebuilds all of ours. Slower, never wrong.
        manifest.unlink(missing_ok=True)  # what it recorded no longer describes the cache
        touched = touch_everything(ROOT)
        print(f"build cache: cannot list tracked files ({e}); {touched} files touched, our crates rebuild")
        return 0
    print(f"build cache: {kept} files unchanged since the cache saw them, {changed} new or changed "
          f"({time.monotonic() - started:.1f} s)")
    return 0


def clean() -> int:
    """Empties the build cache (the target directory in use, else $IMGPIPE_CACHE/target); the lint
    tools beside it stay."""
    path = target_dir() or cache_dir() / "target"
    if path.exists():
        print(f"removing {path} ({size_bytes(path) / 1e9:.1f} GB)")
        shutil.rmtree(path)
    else:
        print(f"{path}: no cache")
    return 0


def size() -> int:
    path = cache_dir()
    print(f"{path}: {size_bytes(path) / 1e9:.1f} GB" if path.exists() else f"{path}: no cache")
    return 0


BAKED_MANIFEST_DIR = re.compile(r'env!\(\s*"CARGO_MANIFEST_DIR"\s*\)')
INCLUDE = re.compile(r'(?:include|include_str|include_bytes)!\(\s*"([^"]+)"\s*\)|#\[path\s*=\s*"([^"]+)"\s*\]')


def baked_paths(source: Path, crate: Path, shown: Path) -> list[str]:
    """What in one Rust source (absolute `source` in the absolute `crate`, `shown` in messages)
    would tie a cached build to the clone it was compiled in."""
    problems = []
    path, text = shown, source.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("//"):
            continue
        if BAKED_MANIFEST_DIR.search(line):
            problems.append(f'{path}:{number}: env!("CARGO_MANIFEST_DIR") bakes this clone\'s path into the '
                            'build; read std::env::var_os("CARGO_MANIFEST_DIR") at run time')
        for groups in INCLUDE.findall(line):
            included = groups[0] or groups[1]
            resolved = (source.parent / included).resolve()
            if crate.resolve() not in resolved.parents:
                problems.append(f"{path}:{number}: includes {included}, outside its crate; "
                                "read it at run time, or move it into the crate")
    return problems


def workspace_members(root: Path) -> list[Path]:
    """The crates of the workspace at `root` (what the cache builds; `fuzz/` has its own target)."""
    with open(root / "Cargo.toml", "rb") as f:
        workspace = tomllib.load(f).get("workspace", {})
    crates = set()
    for pattern in workspace.get("members", []):
        crates.update(p.parent for p in root.glob(f"{pattern}/Cargo.toml"))
    return sorted(crates)


def check_sources(root: Path = ROOT) -> list[str]:
    problems = []
    for crate in workspace_members(root):
        for source in sorted(crate.rglob("*.rs")):
            inner = source.relative_to(crate).parts
            if "target" in inner or any((crate / Path(*inner[:i]) / "Cargo.toml").exists() for i in range(1, len(inner))):
                continue  # a nested crate checks its own files
            problems += baked_paths(source, crate, source.relative_to(root))
    return problems


def check_sources_command() -> int:
    problems = check_sources()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("build cache: no Rust source bakes a clone's path into its build")
    return 0


def main(argv: list[str]) -> int:
    commands = {"prepare": prepare, "clean": clean, "size": size, "check-sources": check_sources_command}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__.rstrip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    return commands[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
