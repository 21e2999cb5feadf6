#!/usr/bin/env python3
"""Check the relative links and anchors of the repository's markdown (README.md and docs/).

Usage: python3 tests/docs/check_links.py [--root DIR] [FILES or DIRS...]

With no FILES, checks README.md and every *.md under docs/ (recursively) of the repository root,
which is two folders above this file (tests/docs/check_links.py) unless --root says otherwise.
A DIR argument means every *.md under it.

Checked: inline links and images, `[text](target)` and `![alt](target)`; reference definitions,
`[id]: target`; and the `href`/`src` of raw HTML `<a>` and `<img>` tags. Skipped: targets with a
URL scheme (http, https, mailto, ...), and everything inside fenced code blocks, inline code spans
and HTML comments. For each other target:
- the path (percent-decoded, query dropped) must exist, relative to the file that links to it
  (a path that starts with `/` is relative to the repository root, as on GitHub), and must not
  leave the repository root;
- an anchor, `#frag` alone (this file) or `file.md#frag`, must be the id GitHub gives a heading of
  that markdown file: the heading's text, lowercased, every character that is not a letter, mark,
  decimal or letter number, connector punctuation (`_`), hyphen or space removed, spaces turned into
  hyphens; a repeated id gets `-1`, `-2`, ... in order; `<a id="...">` / `<a name="...">` count too.
  Anchors into files that are not markdown (e.g. `#L10` on a source file) are not checked.

Prints `path:line: broken link 'target': reason` for each broken link and exits 1 if there are
any; else prints `links ok: N links in M files` (N: links checked, external ones not counted) and
exits 0. Exit 2: a FILE or DIR argument does not exist. Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKDOWN_SUFFIXES = {".md", ".markdown"}

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_REF_DEF = re.compile(r"^ {0,3}\[((?:[^\]\\]|\\.)+)\]:[ \t]*(<[^>\n]*>|\S+)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_LINK_TAG = re.compile(r"<(a|img)\b([^>]*)>", re.I)
_HTML_ATTR = re.compile(r"""\b(href|src|id|name)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_BACKTICKS = re.compile(r"`+")


@dataclass(frozen=True)
class Link:
    """One link found in a markdown file: its target as written and the line it starts on."""

    path: Path
    line: int
    target: str


@dataclass(frozen=True)
class Broken:
    link: Link
    reason: str


# ---- reading markdown -------------------------------------------------------------------------


def _blank(text: str) -> str:
    """The same text with every character but newlines replaced by spaces (offsets kept)."""
    return re.sub(r"[^\n]", " ", text)


def _fenced_lines(lines: list[str]) -> list[bool]:
    """For each line, whether it belongs to a fenced code block (fence lines included)."""
    inside = [False] * len(lines)
    fence: str | None = None
    for i, line in enumerate(lines):
        if fence is None:
            m = _FENCE_OPEN.match(line)
            # A backtick fence's info string may not contain a backtick.
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                inside[i] = True
        else:
            inside[i] = True
            stripped = line.strip()
            if (
                len(line) - len(line.lstrip(" ")) <= 3
                and stripped
                and set(stripped) == {fence[0]}
                and len(stripped) >= len(fence)
            ):
                fence = None
    return inside


def _mask_code_spans(text: str) -> str:
    """Blank out inline code spans (CommonMark: a run of n backticks up to the next run of exactly
    n), which may span lines within one block. Unmatched runs stay as literal text."""
    out = list(text)
    runs = [m for m in _BACKTICKS.finditer(text) if not (m.start() > 0 and text[m.start() - 1] == "\\")]
    i = 0
    while i < len(runs):
        opening = runs[i]
        n = len(opening.group())
        closing = next((j for j in range(i + 1, len(runs)) if len(runs[j].group()) == n), None)
        if closing is None:
            i += 1
            continue
        for k in range(opening.start(), runs[closing].end()):
            if out[k] != "\n":
                out[k] = " "
        i = closing + 1
    return "".join(out)


def _blocks(lines: list[str], fenced: list[bool]) -> list[tuple[int, int]]:
    """Ranges [start, end) of lines that form one block for inline parsing: a paragraph or one list
    item's text. Headings and table rows are blocks of their own; blank and fenced lines end one."""
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    for i, line in enumerate(lines):
        single = bool(_ATX_HEADING.match(line)) or line.lstrip().startswith("|")
        starts_new = single or bool(_LIST_ITEM.match(line))
        if fenced[i] or not line.strip() or starts_new:
            if start is not None:
                blocks.append((start, i))
                start = None
            if fenced[i] or not line.strip():
                continue
            if single:
                blocks.append((i, i + 1))
                continue
        if start is None:
            start = i
    if start is not None:
        blocks.append((start, len(lines)))
    return blocks


def _masked_text(text: str) -> tuple[list[str], str]:
    """The file's lines, and its text with fenced code, code spans and HTML comments blanked out."""
    lines = text.split("\n")
    fenced = _fenced_lines(lines)
    kept = [_blank(line) if fenced[i] else line for i, line in enumerate(lines)]
    joined = _HTML_COMMENT.sub(lambda m: _blank(m.group()), "\n".join(kept))
    kept = joined.split("\n")
    for start, end in _blocks(kept, fenced):
        masked = _mask_code_spans("\n".join(kept[start:end])).split("\n")
        kept[start:end] = masked
    return lines, "\n".join(kept)


def _parse_destination(text: str, pos: int) -> str | None:
    """The link destination starting at text[pos] (just after `(`), or None if there is none."""
    while pos < len(text) and text[pos] in " \t\n":
        pos += 1
    if pos < len(text) and text[pos] == "<":
        end = text.find(">", pos + 1)
        if end == -1 or "\n" in text[pos:end]:
            return None
        return text[pos + 1 : end]
    depth = 0
    start = pos
    while pos < len(text):
        c = text[pos]
        if c == "\\" and pos + 1 < len(text):
            pos += 2
            continue
        if c in " \t\n":
            break
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        pos += 1
    return text[start:pos]


def extract_links(path: Path, text: str) -> list[Link]:
    """Every link target in a markdown file's text, outside code and comments, in file order."""
    _, masked = _masked_text(text)
    line_starts = [0]
    for m in re.finditer("\n", masked):
        line_starts.append(m.end())

    def line_of(offset: int) -> int:
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    found: list[tuple[int, str]] = []
    for m in re.finditer(r"\]\(", masked):
        if m.start() > 0 and masked[m.start() - 1] == "\\":
            continue
        dest = _parse_destination(masked, m.end())
        if dest is None:
            continue
        # The link starts at its opening bracket; report the line of the `](`'s bracket text start.
        opening = masked.rfind("[", 0, m.start())
        found.append((opening if opening != -1 else m.start(), dest))
    for i, line in enumerate(masked.split("\n")):
        m = _REF_DEF.match(line)
        if m and not m.group(1).startswith("^"):
            dest = m.group(2)
            if dest.startswith("<") and dest.endswith(">"):
                dest = dest[1:-1]
            found.append((line_starts[i], dest))
    for m in _HTML_LINK_TAG.finditer(masked):
        for attr in _HTML_ATTR.finditer(m.group(2)):
            if attr.group(1).lower() in ("href", "src"):
                value = next(g for g in attr.groups()[1:] if g is not None)
                found.append((m.start(), value))
    found.sort(key=lambda item: item[0])
    return [Link(path, line_of(offset), dest) for offset, dest in found]


# ---- headings and GitHub's anchor ids -------------------------------------------------------


def _heading_text(raw: str) -> str:
    """The text GitHub renders for a heading's markdown: link and image syntax reduced to their
    text, HTML tags dropped, emphasis markers outside code spans dropped, code spans' backticks
    dropped (their content kept as written)."""
    parts = re.split(r"(`+[^`]*?`+)", raw)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(part.strip("`"))
            continue
        part = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", part)
        part = re.sub(r"!?\[([^\]]*)\]\[[^\]]*\]", r"\1", part)
        part = re.sub(r"<[^>]+>", "", part)
        part = re.sub(r"(?<![\w\\])(\*{1,3}|_{1,3})(?=\S)(.+?)(?<=\S)\1(?!\w)", r"\2", part)
        part = re.sub(r"\\(.)", r"\1", part)
        out.append(part)
    return "".join(out).strip()


def slugify(text: str) -> str:
    """GitHub's id for a heading's rendered text (before the -1, -2 suffixes of repeats):
    `text.downcase.gsub(/[^\\p{Word}\\- ]/u, '').tr(' ', '-')`, where \\p{Word} is letters, marks,
    decimal and letter numbers and connector punctuation."""
    kept = []
    for c in text.lower():
        cat = unicodedata.category(c)
        if c in "- " or cat[0] in "LM" or cat in ("Nd", "Nl", "Pc"):
            kept.append(c)
    return "".join(kept).replace(" ", "-")


def anchors_of(text: str) -> set[str]:
    """Every anchor id a markdown file defines: heading ids with GitHub's -N suffixes for repeats,
    and explicit `<a id=...>` / `<a name=...>` anchors."""
    lines = text.split("\n")
    fenced = _fenced_lines(lines)
    headings: list[str] = []
    for i, line in enumerate(lines):
        if fenced[i]:
            continue
        m = _ATX_HEADING.match(line)
        if m:
            headings.append(_heading_text(m.group(2) or ""))
            continue
        if (
            i > 0
            and _SETEXT_UNDERLINE.match(line)
            and not fenced[i - 1]
            and lines[i - 1].strip()
            and not _ATX_HEADING.match(lines[i - 1])
            and not _LIST_ITEM.match(lines[i - 1])
            and not lines[i - 1].lstrip().startswith(("|", ">"))
        ):
            headings.append(_heading_text(lines[i - 1].strip()))

    ids: set[str] = set()
    occurrences: dict[str, int] = {}
    for heading in headings:
        original = slugify(heading)
        slug = original
        while slug in occurrences:
            occurrences[original] += 1
            slug = f"{original}-{occurrences[original]}"
        occurrences[slug] = 0
        ids.add(slug)

    _, masked = _masked_text(text)
    for m in _HTML_LINK_TAG.finditer(masked):
        if m.group(1).lower() != "a":
            continue
        for attr in _HTML_ATTR.finditer(m.group(2)):
            if attr.group(1).lower() in ("id", "name"):
                ids.add(next(g for g in attr.groups()[1:] if g is not None))
    return ids


# ---- checking ---------------------------------------------------------------------------------


class Checker:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self._anchors: dict[Path, set[str]] = {}

    def anchors(self, path: Path) -> set[str]:
        if path not in self._anchors:
            self._anchors[path] = anchors_of(path.read_text(encoding="utf-8"))
        return self._anchors[path]

    def check_link(self, link: Link) -> str | None:
        """Why the link is broken, or None when it is fine."""
        target = link.target.strip()
        if not target:
            return "empty target"
        path_part, _, fragment = target.partition("#")
        path_part = path_part.split("?", 1)[0]
        path_part = unquote(path_part)
        if not path_part:
            resolved = link.path.resolve()
        elif path_part.startswith("/"):
            resolved = (self.root / path_part.lstrip("/")).resolve()
        else:
            resolved = (link.path.parent / path_part).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            return f"{path_part} is outside the repository root"
        if not resolved.exists():
            return f"no such file: {_display(resolved, self.root)}"
        if not fragment:
            return None
        if resolved.is_dir():
            readme = resolved / "README.md"
            if not readme.is_file():
                return None
            resolved = readme
        if resolved.suffix.lower() not in MARKDOWN_SUFFIXES:
            return None
        anchor = unquote(fragment)
        ids = self.anchors(resolved)
        if anchor in ids:
            return None
        where = "this file" if resolved == link.path.resolve() else _display(resolved, self.root)
        hint = ""
        if anchor.lower() in ids:
            hint = f" (ids are lowercase: #{anchor.lower()})"
        else:
            close = sorted(i for i in ids if i.startswith(anchor[:12]) and anchor[:12])
            if close:
                hint = f" (did you mean #{close[0]}?)"
        return f"no heading or anchor #{anchor} in {where}{hint}"

    def check_file(self, path: Path) -> tuple[list[Link], list[Broken]]:
        links = [
            link
            for link in extract_links(path, path.read_text(encoding="utf-8"))
            if not _SCHEME.match(link.target.strip()) and not link.target.strip().startswith("//")
        ]
        broken = []
        for link in links:
            reason = self.check_link(link)
            if reason is not None:
                broken.append(Broken(link, reason))
        return links, broken


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def markdown_files(arguments: list[Path]) -> list[Path]:
    files: list[Path] = []
    for arg in arguments:
        if arg.is_dir():
            files.extend(sorted(p for p in arg.rglob("*") if p.suffix.lower() in MARKDOWN_SUFFIXES and p.is_file()))
        else:
            files.append(arg)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def check(files: list[Path], root: Path) -> tuple[int, list[Broken]]:
    """Check the given markdown files; returns the number of links checked and the broken ones."""
    checker = Checker(root)
    total = 0
    broken: list[Broken] = []
    for path in files:
        links, bad = checker.check_file(path)
        total += len(links)
        broken.extend(bad)
    return total, broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="markdown files or folders (default: README.md and docs/)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    arguments = args.paths or [p for p in (root / "README.md", root / "docs") if p.exists()]
    missing = [p for p in arguments if not p.exists()]
    if missing:
        for p in missing:
            print(f"{p}: no such file or directory", file=sys.stderr)
        return 2
    files = markdown_files(arguments)
    total, broken = check(files, root)
    for b in broken:
        print(f"{_display(b.link.path, root)}:{b.link.line}: broken link '{b.link.target}': {b.reason}")
    if broken:
        return 1
    print(f"links ok: {total} links in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
