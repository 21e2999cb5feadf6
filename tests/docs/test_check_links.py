"""Tests of check_links.py: each builds a small markdown tree in a temporary folder and checks it.

Run: python3 -m unittest discover -s tests/docs   (or, in tests/docs: python3 -m unittest)
"""

import contextlib
import io
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_links  # noqa: E402


class TreeTest(unittest.TestCase):
    """A temporary repository root with README.md and docs/."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name).resolve()
        self.write("docs/target.md", """\
            # Target page

            Some text.

            ## Fewer bytes: perceptual quality targets

            ### JPEG encoder: libjpeg-turbo or jpegli (`encoder = "turbo" | "jpegli"`)

            ## Results

            ## Results

            <a id="explicit-anchor"></a>
            """)
        self.write("docs/gallery.jpg", "not really a jpeg")

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, relative, content):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content), encoding="utf-8")
        return path

    def broken(self, relative, content):
        """The broken links of one file written with `content`, as (line, target, reason)."""
        path = self.write(relative, content)
        _, broken = check_links.check([path], self.root)
        return [(b.link.line, b.link.target, b.reason) for b in broken]

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check_links.main(["--root", str(self.root), *argv])
        return code, out.getvalue(), err.getvalue()


class GoodLinks(TreeTest):
    def test_good_links_pass(self):
        self.assertEqual(self.broken("README.md", """\
            # Project

            See [the target](docs/target.md), [its section](docs/target.md#fewer-bytes-perceptual-quality-targets),
            ![a picture](docs/gallery.jpg), [this page](#project), [a folder](docs/) and
            [a root-relative path](/docs/target.md#results).
            """), [])

    def test_link_from_docs_page_up_to_the_repository(self):
        self.write("infra/README.md", "# Infra\n")
        self.assertEqual(self.broken("docs/page.md", """\
            # Page

            [infra](../infra/README.md#infra), [sibling](target.md#target-page), ![g](gallery.jpg)
            """), [])

    def test_heading_with_code_and_punctuation(self):
        self.assertEqual(self.broken("docs/page.md", """\
            [x](target.md#jpeg-encoder-libjpeg-turbo-or-jpegli-encoder--turbo--jpegli)
            """), [])

    def test_duplicate_heading_suffix_passes(self):
        self.assertEqual(self.broken("docs/page.md", """\
            [first](target.md#results) and [second](target.md#results-1)
            """), [])

    def test_explicit_anchor_passes(self):
        self.assertEqual(self.broken("docs/page.md", "[x](target.md#explicit-anchor)\n"), [])

    def test_reference_definition_is_checked(self):
        self.assertEqual(self.broken("docs/page.md", """\
            Read [the target][t].

            [t]: target.md#results
            """), [])
        problems = self.broken("docs/other.md", """\
            Read [the target][t].

            [t]: missing.md
            """)
        self.assertEqual([(line, target) for line, target, _ in problems], [(3, "missing.md")])

    def test_external_links_are_skipped(self):
        self.assertEqual(self.broken("docs/page.md", """\
            [web](https://example.com/nothing.md#nope), [mail](mailto:someone@example.com),
            [plain](http://example.com/x)
            """), [])

    def test_percent_encoded_path(self):
        self.write("docs/with space.md", "# Spaced\n")
        self.assertEqual(self.broken("docs/page.md", "[x](with%20space.md#spaced)\n"), [])

    def test_setext_heading(self):
        self.write("docs/setext.md", "Title here\n==========\n\nSub part\n--------\n")
        self.assertEqual(self.broken("docs/page.md", "[a](setext.md#title-here) [b](setext.md#sub-part)\n"), [])


class BrokenLinks(TreeTest):
    def test_missing_file_fails(self):
        problems = self.broken("README.md", "# Project\n\nSee [nothing](docs/nothing.md).\n")
        self.assertEqual(len(problems), 1)
        line, target, reason = problems[0]
        self.assertEqual((line, target), (3, "docs/nothing.md"))
        self.assertIn("no such file", reason)

    def test_missing_anchor_fails(self):
        problems = self.broken("README.md", "[x](docs/target.md#no-such-heading)\n")
        self.assertEqual(len(problems), 1)
        self.assertIn("#no-such-heading", problems[0][2])

    def test_missing_anchor_in_same_file_fails(self):
        problems = self.broken("docs/page.md", "# Page\n\n[x](#pagee)\n")
        self.assertEqual([(line, target) for line, target, _ in problems], [(3, "#pagee")])

    def test_duplicate_suffix_beyond_the_repeats_fails(self):
        problems = self.broken("docs/page.md", "[x](target.md#results-2)\n")
        self.assertEqual([target for _, target, _ in problems], ["target.md#results-2"])

    def test_anchor_case_matters(self):
        problems = self.broken("docs/page.md", "[x](target.md#Results)\n")
        self.assertEqual(len(problems), 1)
        self.assertIn("lowercase", problems[0][2])

    def test_missing_image_fails(self):
        problems = self.broken("docs/page.md", "![alt](missing.png)\n")
        self.assertEqual([target for _, target, _ in problems], ["missing.png"])

    def test_link_outside_the_repository_fails(self):
        problems = self.broken("docs/page.md", "[x](../../elsewhere.md)\n")
        self.assertEqual(len(problems), 1)
        self.assertIn("outside the repository", problems[0][2])

    def test_line_number_of_a_wrapped_link(self):
        problems = self.broken("docs/page.md", "one\n\ntwo [a link\nwrapped](gone.md) three\n")
        self.assertEqual([line for line, _, _ in problems], [3])


class IgnoredLinks(TreeTest):
    def test_link_in_code_fence_is_ignored(self):
        self.assertEqual(self.broken("README.md", """\
            # Project

            ```markdown
            [broken](docs/nothing.md)
            ![broken](nothing.png)
            [ref]: nothing.md
            ```

            ~~~
            [broken](#nowhere)
            ~~~
            """), [])

    def test_heading_in_code_fence_is_not_an_anchor(self):
        self.write("docs/fenced.md", "# Real\n\n```sh\n# not a heading\n```\n")
        problems = self.broken("docs/page.md", "[x](fenced.md#not-a-heading) [y](fenced.md#real)\n")
        self.assertEqual([target for _, target, _ in problems], ["fenced.md#not-a-heading"])

    def test_link_in_inline_code_is_ignored(self):
        self.assertEqual(self.broken("README.md", """\
            Write `[text](nothing.md)` for a link; a span may wrap: `a [x](nothing.md)
            b` and ``code with ` [y](gone.md)``.
            """), [])

    def test_link_in_html_comment_is_ignored(self):
        self.assertEqual(self.broken("README.md", "<!-- [x](nothing.md)\n[y](gone.md) -->\n"), [])


class CommandLine(TreeTest):
    def test_default_files_ok(self):
        self.write("README.md", "# Project\n\n[docs](docs/target.md#results-1)\n")
        self.write("docs/sub/deeper.md", "[up](../target.md)\n")
        code, out, _ = self.run_main()
        self.assertEqual(code, 0)
        self.assertEqual(out.strip(), "links ok: 2 links in 3 files")

    def test_broken_link_output_and_exit_code(self):
        self.write("README.md", "# Project\n\n[gone](docs/gone.md)\n")
        code, out, _ = self.run_main()
        self.assertEqual(code, 1)
        self.assertEqual(len(out.strip().split("\n")), 1)
        self.assertTrue(out.startswith("README.md:3: broken link 'docs/gone.md': "), out)

    def test_explicit_file_argument(self):
        self.write("README.md", "[gone](docs/gone.md)\n")
        path = self.write("docs/page.md", "[ok](target.md)\n")
        code, out, _ = self.run_main(str(path))
        self.assertEqual((code, out.strip()), (0, "links ok: 1 links in 1 files"))

    def test_missing_argument_is_an_error(self):
        code, _, err = self.run_main(str(self.root / "nope.md"))
        self.assertEqual(code, 2)
        self.assertIn("no such file", err)


class Slugs(unittest.TestCase):
    def test_github_slugs(self):
        cases = {
            "Quick start": "quick-start",
            "Upload API (`functions/api`, binary `api`)": "upload-api-functionsapi-binary-api",
            "Proven under load: soak, memory admission, deadlines, fuzzing":
                "proven-under-load-soak-memory-admission-deadlines-fuzzing",
            "The rate-distortion harness (`make bench-rd`, also the end of `make bench`)":
                "the-rate-distortion-harness-make-bench-rd-also-the-end-of-make-bench",
            "Config `IMGPIPE_MAX_PIXELS`": "config-imgpipe_max_pixels",
            "Rate–distortion × 2": "ratedistortion--2",
            "**Bold** and [a link](x.md)": "bold-and-a-link",
        }
        for heading, slug in cases.items():
            with self.subTest(heading=heading):
                self.assertEqual(check_links.slugify(check_links._heading_text(heading)), slug)


if __name__ == "__main__":
    unittest.main()
