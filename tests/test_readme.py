"""The README's Python example runs as written, with a smaller dataset and epoch budget."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
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
