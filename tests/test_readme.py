"""The README: its first screen (STYLE.md), its length and links, and its Python example, which runs
as written with a smaller dataset and epoch budget. The guides and benchmark write-ups live in
docs/ (tests/test_docs.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 200
SMALLER = {  # README text -> what the test runs instead (same code, smaller budget)
    'build_dataset("digits-av")': 'build_dataset("digits-av", limit=200)',
    'label="digit",': 'label="digit", max_epochs=2,',
}


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no python example"
    return match.group(1)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader")
    code = first_python_block()
    for old, new in SMALLER.items():
        assert old in code, f"README example changed: {old!r} not found"
        code = code.replace(old, new)
    env = {**os.environ, "POLYFUSE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = result.stdout.splitlines()[0]
    accuracy = float(first.split()[0])
    assert 0.0 <= accuracy <= 1.0
    assert "'image'" in first and "'audio'" in first and "'text'" in first  # one baseline each
    assert (tmp_path / "runs/digits-av/model.safetensors").is_file()


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README has {len(lines)} lines; move the rest to docs/"


def test_readme_first_screen():
    """What polyfuse is, the two commands, a six-line example and one picture, before any section."""
    text = README.read_text()
    first_screen = text[: text.index("\n## ")]
    commands = re.search(r"```bash\n(.*?)```", first_screen, re.S)
    assert commands and "make demo" in commands.group(1) and "make test" in commands.group(1)
    assert len([line for line in first_python_block().splitlines() if line.strip()]) <= 6
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", first_screen)
    assert len(pictures) == 1 and (ROOT / pictures[0]).is_file()


def test_readme_links_resolve():
    """Every relative link names a file of the repository, and a heading of it when it has an anchor."""
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in relative)
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        assert target.exists(), f"README links to {link}, which does not exist"
        if anchor:
            assert anchor in heading_slugs(target), f"README links to {link}: no such heading"


def heading_slugs(page: Path) -> set[str]:
    """GitHub's and mkdocs' anchors of a page's headings (lower case, punctuation dropped, spaces -> -)."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.strip().lower())) for h in headings}
