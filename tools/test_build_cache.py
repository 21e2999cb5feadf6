"""Unit tests of tools/build_cache.py: cached mtimes come back only for unchanged contents, and the
source check finds what would tie a cached build to an old clone.   python3 -m unittest discover -s tools"""

import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_cache  # noqa: E402


def git_repo(files: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="build-cache-test-"))
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    return root


class RestoreMtimes(unittest.TestCase):
    def test_unchanged_files_get_the_cached_mtime_and_changed_ones_keep_theirs(self):
        first = git_repo({"src/a.rs": "fn a() {}\n", "src/b.rs": "fn b() {}\n"})
        manifest = Path(tempfile.mkdtemp()) / "mtimes.tsv"
        old = 1_600_000_000 * 10**9
        for rel in ("src/a.rs", "src/b.rs"):
            os.utime(first / rel, ns=(old, old))
        self.assertEqual(build_cache.restore_mtimes(manifest, first), (0, 2))

        # A fresh clone of the next commit: a.rs the same, b.rs edited; both have the clone's time.
        second = git_repo({"src/a.rs": "fn a() {}\n", "src/b.rs": "fn b() { let _ = 1; }\n"})
        now = time.time_ns()
        self.assertEqual(build_cache.restore_mtimes(manifest, second), (1, 1))
        self.assertEqual((second / "src/a.rs").stat().st_mtime_ns, old)
        self.assertGreaterEqual((second / "src/b.rs").stat().st_mtime_ns, now - 10**9)

        # The manifest now holds the edited b.rs with its new time: a third clone keeps both.
        third = git_repo({"src/a.rs": "fn a() {}\n", "src/b.rs": "fn b() { let _ = 1; }\n"})
        self.assertEqual(build_cache.restore_mtimes(manifest, third), (2, 0))
        self.assertEqual((third / "src/b.rs").stat().st_mtime_ns, (second / "src/b.rs").stat().st_mtime_ns)

    def test_an_uncommitted_edit_counts_as_a_change(self):
        root = git_repo({"lib.rs": "fn x() {}\n"})
        manifest = Path(tempfile.mkdtemp()) / "mtimes.tsv"
        build_cache.restore_mtimes(manifest, root)
        (root / "lib.rs").write_text("fn x() { todo!() }\n")
        self.assertEqual(build_cache.restore_mtimes(manifest, root), (0, 1))

    def test_outside_git_every_file_becomes_newer_than_any_cache(self):
        root = Path(tempfile.mkdtemp(prefix="build-cache-test-"))
        (root / "src").mkdir()
        (root / "src/lib.rs").write_text("fn x() {}\n")
        (root / "target").mkdir()
        (root / "target/old").write_text("")
        old = 1_600_000_000 * 10**9
        for rel in ("src/lib.rs", "target/old"):
            os.utime(root / rel, ns=(old, old))
        self.assertEqual(build_cache.touch_everything(root), 1)
        self.assertGreater((root / "src/lib.rs").stat().st_mtime_ns, old)
        self.assertEqual((root / "target/old").stat().st_mtime_ns, old)

    def test_blob_id_is_gits(self):
        root = git_repo({"f.txt": "hello\n"})
        out = subprocess.run(["git", "hash-object", "f.txt"], cwd=root, check=True, capture_output=True, text=True)
        self.assertEqual(build_cache.blob_id(b"hello\n"), out.stdout.strip())


class CheckSources(unittest.TestCase):
    def test_baked_manifest_dir_and_includes_outside_the_crate_are_found(self):
        root = git_repo({
            "Cargo.toml": '[workspace]\nmembers = ["crate"]\n',
            "crate/Cargo.toml": "[package]\n",
            "crate/src/lib.rs": 'const A: &str = include_str!("../data/ok.txt");\n'
                                'const B: &str = include_str!("../../infra/x.json");\n'
                                '// env!("CARGO_MANIFEST_DIR") in a comment is fine\n'
                                'fn f() -> &\'static str { env!("CARGO_MANIFEST_DIR") }\n'
                                '#[path = "../../shared/m.rs"]\nmod m;\n',
            "crate/data/ok.txt": "ok",
            "infra/x.json": "{}",
            "shared/m.rs": "",
            # Not a workspace member (like fuzz/): not built into the cache, not checked.
            "other/Cargo.toml": "[package]\n",
            "other/src/lib.rs": 'const C: &str = include_str!("../../infra/x.json");\n',
        })
        problems = build_cache.check_sources(root)
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("crate/src/lib.rs:2: includes ../../infra/x.json, outside its crate", problems[0])
        self.assertIn("crate/src/lib.rs:4: env!(\"CARGO_MANIFEST_DIR\")", problems[1])
        self.assertIn("crate/src/lib.rs:5: includes ../../shared/m.rs, outside its crate", problems[2])

    def test_the_cache_is_off_unless_the_makefile_turns_it_on(self):
        outside = str(Path(tempfile.mkdtemp()) / "target")
        saved = {k: os.environ.get(k) for k in ("CARGO_TARGET_DIR", "IMGPIPE_BUILD_CACHE")}
        try:
            os.environ["CARGO_TARGET_DIR"] = outside
            os.environ.pop("IMGPIPE_BUILD_CACHE", None)
            self.assertIsNone(build_cache.target_dir())
            os.environ["IMGPIPE_BUILD_CACHE"] = "1"
            self.assertEqual(build_cache.target_dir(), Path(outside).resolve())
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def test_this_repository_is_clean(self):
        self.assertEqual(build_cache.check_sources(), [])


if __name__ == "__main__":
    unittest.main()
