"""The documentation site builds with ``mkdocs build --strict``, and the examples on its pages run.

Every ```python and ```bash / ```sh / ```shell block of docs/**/*.md runs as written, in page order,
in one fresh folder per page (so a page's later blocks use what its earlier ones wrote): Python
blocks in a fresh interpreter, shell blocks through bash with ``-e -o pipefail``. A block that
cannot run in the suite (it trains for minutes, installs packages, needs a model that takes long to
train) is preceded by ``<!-- not run: REASON -->``, and the reason must be given.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
RUNNERS = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
NOT_RUN = {"text", "json", "csv"}  # transcripts, synopses and file contents: shown, never run
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*not run:(.*?)-->", re.S)
BLOCK_TIMEOUT_S = 300


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # the marker's reason; None when the block runs

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the ``not run`` marker right above it, if any."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        markers = list(MARKER.finditer(before))
        attached = markers[-1] if markers and markers[-1].end() == len(before) else None
        found.append(
            Block(
                page,
                text.count("\n", 0, match.start()) + 1,
                match.group(1),
                match.group(2),
                attached.group(1).strip() if attached else None,
            )
        )
    return found


def runnable(page: Path) -> list[Block]:
    return [b for b in page_blocks(page) if b.language in RUNNERS and b.not_run is None]


def test_the_docs_have_pages():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "getting-started.md", "format.md", "api.md", "benchmarks/avmnist.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_block_is_run_or_says_why_not(page: Path):
    blocks = page_blocks(page)
    for block in blocks:
        assert block.language in RUNNERS or block.language in NOT_RUN, (
            f"{block.where}: fence language {block.language!r}; use one of {sorted({*RUNNERS, *NOT_RUN})}"
        )
        if block.not_run is not None:
            assert block.not_run, f"{block.where}: a 'not run' marker must give its reason"
            assert block.language in RUNNERS, f"{block.where}: a 'not run' marker on a {block.language} block"
    markers = len(MARKER.findall(page.read_text()))
    attached = sum(b.not_run is not None for b in blocks)
    assert markers == attached, f"{page.name}: a 'not run' marker is not right above a code block"


def test_the_block_parser(tmp_path: Path):
    page = tmp_path / "sample.md"
    page.write_text("a\n\n<!-- not run: too slow -->\n```bash\nmake demo\n```\n\n```python\nprint(1)\n```\n")
    first, second = page_blocks(page)
    assert (first.language, first.code, first.not_run) == ("bash", "make demo\n", "too slow")
    assert (second.language, second.code, second.not_run) == ("python", "print(1)\n", None)


def test_site_builds_strictly(tmp_path: Path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[dev]' installs the docs tools)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    args = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "format" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert 'id="polyfuse.predictor.Predictor.predict"' in api  # mkdocstrings rendered the docstrings


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable(p)], ids=lambda p: p.relative_to(DOCS).as_posix()
)
def test_page_examples_run(page: Path, tmp_path: Path):
    blocks = runnable(page)
    if any("digits-av" in b.code for b in blocks) and importlib.util.find_spec("espeakng_loader") is None:
        pytest.skip("building digits-av needs the audio extra (espeakng-loader)")
    bin_dir = str(Path(sys.executable).parent)  # `python` and `polyfuse` of this environment
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
    }
    for i, block in enumerate(blocks):
        script = tmp_path / f"block{i}.{'py' if block.language == 'python' else 'sh'}"
        script.write_text(block.code)
        command = (
            [sys.executable, str(script)]
            if RUNNERS[block.language] == "python"
            else ["bash", "-e", "-o", "pipefail", str(script)]
        )
        code, output = run_block(command, tmp_path, env)
        assert code == 0, f"{block.where} ({block.language}) exited with {code}:\n{output[-4000:]}"


def run_block(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run one block in its own process group, so that a server it started never outlives it."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        output, _ = proc.communicate()
        return -1, f"{output}\ntimed out after {BLOCK_TIMEOUT_S} s"
    finally:
        _kill_group(proc.pid)  # anything the block left running in the background


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
