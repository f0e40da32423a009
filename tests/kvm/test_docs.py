"""The repository stands on its own and its docs agree with it (ctest docs.check, no build
needed):

- nothing tracked points outside the repository (the team's ../shared folder) or names a
  Markdown file the repository does not have;
- every relative link and anchor in the Markdown files resolves;
- docs/layout.md's folder map lists every folder, and README.md's map every page of docs/;
- the README's two commands exist.
"""
import os
import re
import subprocess

import pytest

from conftest import SOURCE_DIR

# The one file allowed to name the team's folder: .ci/run hands Firecracker's API document to
# api.firecracker when a copy lies next to the repository (and this test names it).
OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b|\bshared/(docs|reference)\b")
OUTSIDE_ALLOWED = {".ci/run", "tests/kvm/test_docs.py"}
MD_NAME = re.compile(r"\b([\w.-]+\.md)\b")
# Markdown files that programs write, not the repository's own.
MD_WRITTEN = {"summary.md"}  # scripts/fuzz-smoke's table
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def tracked_files():
    """Every tracked file (git ls-files), or every file of the tree outside build output."""
    if (SOURCE_DIR / ".git").exists():
        out = subprocess.run(["git", "-C", str(SOURCE_DIR), "ls-files", "-z"],
                             capture_output=True, check=True).stdout
        return [p for p in out.decode().split("\0") if p]
    files = []
    for root, dirs, names in os.walk(SOURCE_DIR):
        dirs[:] = [d for d in dirs if d != ".git" and not d.startswith("build") and d != "out"]
        files += [os.path.relpath(os.path.join(root, n), SOURCE_DIR) for n in names]
    return files


FILES = tracked_files()


def text(path):
    data = (SOURCE_DIR / path).read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


def markdown_files():
    return [p for p in FILES if p.endswith(".md")]


def tracked_lines():
    """(path, line number, line) of every tracked text file but the allowed ones."""
    for path in FILES:
        body = text(path)
        if body is None or path in OUTSIDE_ALLOWED:
            continue
        for n, line in enumerate(body.splitlines(), 1):
            yield path, n, line


def test_nothing_points_outside_the_repository():
    found = [f"{path}:{n}: {line.strip()}" for path, n, line in tracked_lines()
             if OUTSIDE.search(line)]
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_every_markdown_file_named_exists():
    names = {os.path.basename(p) for p in markdown_files()} | MD_WRITTEN
    found = [f"{path}:{n}: {name}" for path, n, line in tracked_lines()
             for name in MD_NAME.findall(line) if name not in names]
    assert not found, "Markdown files named but not in the repository:\n" + "\n".join(found)


def slug(heading):
    """The anchor GitHub gives a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    body = text(path) or ""
    in_code = False
    out = set()
    for line in body.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def test_links_and_anchors_resolve():
    broken = []
    for path in markdown_files():
        for target in LINK.findall(text(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not (SOURCE_DIR / dest).exists():
                broken.append(f"{path}: {target} (no {dest})")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                broken.append(f"{path}: {target} (no heading #{anchor} in {dest})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def folders():
    out = set()
    for path in FILES:
        d = os.path.dirname(path)
        while d:
            out.add(d)
            d = os.path.dirname(d)
    return out


def test_the_layout_map_lists_every_folder():
    layout = (SOURCE_DIR / "docs" / "layout.md").read_text()
    listed = set(re.findall(r"`([\w./*-]+)/`", layout))
    missing = []
    for d in sorted(folders()):
        parent = os.path.dirname(d)
        if d in listed or (parent and f"{parent}/*" in listed):
            continue
        missing.append(d + "/")
    assert not missing, "folders missing from docs/layout.md's map: " + ", ".join(missing)


def test_the_readme_maps_every_page_and_its_commands_exist():
    readme = (SOURCE_DIR / "README.md").read_text()
    pages = sorted(p for p in markdown_files() if p.startswith("docs/"))
    assert pages, "no docs/"
    unmapped = [p for p in pages if f"]({p})" not in readme]
    assert not unmapped, f"README.md's map does not link {unmapped}"
    for command in re.findall(r"^\./(scripts/\w+)", readme, re.M):
        assert os.access(SOURCE_DIR / command, os.X_OK), f"README.md runs {command}"
    assert "./scripts/bootstrap" in readme and "./scripts/test" in readme


@pytest.mark.parametrize("line,outside", [
    ("see ../shared/docs/platform.md", True),
    ("(/work/shared/reference/firecracker-api.yaml)", True),
    ("docs/platform-notes.md", False),
])
def test_the_outside_pattern(line, outside):
    assert bool(OUTSIDE.search(line)) == outside
