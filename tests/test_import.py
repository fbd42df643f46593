"""``import polyfuse`` stays light, and every public name resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import polyfuse

HEAVY = ("torch", "lightning", "pytorch_lightning", "transformers", "fastapi", "sklearn", "captum", "onnx")


def _modules_after(statement: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``statement`` in a fresh interpreter."""
    report = "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    code = f"import sys; {statement}; {report}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_polyfuse_is_light():
    loaded = _modules_after("import polyfuse")
    assert "polyfuse" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_cli_module_is_light():
    # `polyfuse --help` should answer without loading torch: commands import what they need.
    loaded = _modules_after("import polyfuse.cli")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize("name", polyfuse.__all__)
def test_public_names_resolve(name):
    value = getattr(polyfuse, name)
    assert value is not None
    if name != "__version__":
        assert callable(value), name


def test_dir_and_unknown_attribute():
    assert set(polyfuse.__all__) <= set(dir(polyfuse))
    assert {"fit", "load", "Predictor", "list_datasets", "build_dataset"} <= set(polyfuse.__all__)
    with pytest.raises(AttributeError, match="no_such_thing"):
        polyfuse.no_such_thing  # noqa: B018
