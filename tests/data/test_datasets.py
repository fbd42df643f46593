"""Built-in datasets: digits-av is built for real (60 rows), reproducibly, as files on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyfuse.data.datasets import build_dataset, cache_dir, hints, list_datasets, load_dataset
from polyfuse.data.datasets.digits_av import META, TABLE

ROWS = 60


def _build(root: Path, seed: int = 0) -> Path:
    pytest.importorskip("espeakng_loader")
    return build_dataset("digits-av", out=root, seed=seed, limit=ROWS)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("digits-av"))


def test_list_datasets_describes_digits_av() -> None:
    (info,) = [d for d in list_datasets() if d["name"] == "digits-av"]
    assert info["label"] == "digit" and info["rows"] == 1797
    assert info["modalities"] == ["audio", "image", "text"]


def test_import_is_light() -> None:
    code = (
        "import sys, polyfuse.data.datasets; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'espeakng_loader'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_table_and_files(built: Path) -> None:
    import soundfile as sf
    from PIL import Image

    frame = pd.read_csv(built, keep_default_na=False)
    assert list(frame.columns) == ["image", "audio", "text", "split", "digit"]
    assert len(frame) == ROWS and sorted(frame.digit.unique()) == list(range(10))
    assert set(frame.split) == {"train", "val", "test"}
    for rel in frame.image:
        with Image.open(built.parent / rel) as img:
            assert img.mode == "L" and img.size == (32, 32)
    samples, rate = sf.read(built.parent / frame.audio[0], dtype="int16")
    assert rate == 16_000 and samples.ndim == 1 and len(samples) == 16_000
    assert np.abs(samples).max() > 1000  # not silence


def test_same_seed_same_bytes(built: Path, tmp_path: Path) -> None:
    again = _build(tmp_path / "again")
    assert again.read_bytes() == built.read_bytes()
    for folder in ("audio", "images"):
        for file in sorted((built.parent / folder).iterdir()):
            assert (again.parent / folder / file.name).read_bytes() == file.read_bytes(), file.name


def test_other_seed_differs(built: Path, tmp_path: Path) -> None:
    other = _build(tmp_path / "other", seed=1)
    assert other.read_bytes() != built.read_bytes()
    assert (other.parent / "audio/00000.wav").read_bytes() != (built.parent / "audio/00000.wav").read_bytes()


def test_some_test_voices_never_heard_in_training(built: Path) -> None:
    meta = pd.read_csv(built.parent / META)
    train_voices = set(meta.voice[meta.split == "train"])
    assert set(meta.voice[meta.split == "test"]) - train_voices


def test_complete_build_is_reused_and_killed_build_redone(built: Path) -> None:
    marker = built.parent / ".complete"
    stamp = built.stat().st_mtime_ns
    assert build_dataset("digits-av", out=built.parent, limit=ROWS) == built
    assert built.stat().st_mtime_ns == stamp
    marker.unlink()  # as if the build had been killed before its end
    assert _build(built.parent) == built and marker.exists()


def test_load_dataset_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("espeakng_loader")
    monkeypatch.setenv("POLYFUSE_CACHE", str(tmp_path))
    frame, folder = load_dataset("digits-av", limit=20)
    assert folder.parent == tmp_path / "datasets" and (folder / TABLE).is_file()
    assert len(frame) == 20 and not frame.text.isna().any()  # empty notes stay empty strings


def test_cache_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POLYFUSE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "polyfuse"
    monkeypatch.setenv("POLYFUSE_CACHE", str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own"


@pytest.mark.parametrize("kind", [k for k in hints.KIND_WEIGHTS if k])
def test_notes_never_single_out_a_digit(kind: str) -> None:
    notes = {d: {hints.note_for(d, kind, np.random.default_rng(i)) for i in range(300)} for d in range(10)}
    for digit, said in notes.items():
        others = set().union(*(n for d, n in notes.items() if d != digit))
        assert said <= others, f"a {kind} note names digit {digit}"


def test_missing_espeak_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyfuse.data.datasets.speech import require_espeak

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(ImportError, match=r"polyfuse\[audio\]"):
        require_espeak()
