"""Shared fixtures: a private dataset cache, small synthetic tables, real media files, digits-av.

The synthetic tables carry a learnable signal in every modality (numbers, a category, a note), so
trained models can be held to "beats chance by a margin", not just "runs".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Fixtures shared by the test files of one folder live in a module there (a second conftest.py would
# clash with this one: the test folders are not packages) and are registered here once.
pytest_plugins = ["serve.serving"]

DIGITS_ROWS = 500  # digits-av rows for end-to-end fits: ~340 train, ~80 val, ~80 test
# Inputs at the size the data actually has (8x8 digits upscaled): the same accuracy, a fraction of
# the compute of the 32 px / 64 mel defaults.
DIGITS_OPTIONS = {"image": {"image_size": 16}, "audio": {"n_mels": 32}}
# Keyword arguments of every quick fit; every table here names its text column "text".
FAST = {"verbose": False, "encoders": {"text": "text_bag"}}

CLASS_WORDS = ("early", "late", "damaged")  # the note's hint word for class 0 / 1 / 2
FILLER = ("quietly", "today", "again", "somehow", "indeed", "as usual")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point POLYFUSE_CACHE at a temporary folder for the whole session: tests never touch ~/.cache."""
    folder = tmp_path_factory.mktemp("polyfuse-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLYFUSE_CACHE", str(folder))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        yield folder


def synthetic_frame(n: int = 300, seed: int = 0, task: str = "multiclass") -> pd.DataFrame:
    """Numbers, a category and a note that each carry part of the label.

    A latent class ``z`` drives ``x1`` (shifted by z), ``colour`` (matches z 70% of the time) and the
    note (names z's hint word 80% of the time). ``task`` picks the label column(s):

    * ``multiclass``: ``kind`` in {a, b, c} (= z);
    * ``binary``: ``ok`` in {no, yes} (z from two values);
    * ``regression``: ``price`` = 2 x1 - x2 + 0.5 colour effect + small noise;
    * ``two_labels``: both ``kind`` and ``price``.
    """
    rng = np.random.default_rng(seed)
    k = 2 if task == "binary" else 3
    z = rng.integers(0, k, n)
    x1 = z + rng.normal(0, 0.6, n)
    x2 = rng.normal(0, 1, n)
    colours = np.array(["red", "green", "blue"])
    colour_idx = np.where(rng.random(n) < 0.7, z, rng.integers(0, 3, n))
    hint = np.where(rng.random(n) < 0.8, z, rng.integers(0, 3, n))
    notes = [
        f"the parcel arrived {CLASS_WORDS[h]} and {FILLER[rng.integers(len(FILLER))]} without fuss"
        for h in hint
    ]
    frame = pd.DataFrame({"x1": x1, "x2": x2, "colour": colours[colour_idx], "text": notes})
    price = 2 * x1 - x2 + 0.5 * colour_idx + rng.normal(0, 0.2, n)
    if task == "binary":
        frame["ok"] = np.array(["no", "yes"])[z]
    elif task == "regression":
        frame["price"] = price
    elif task == "multiclass":
        frame["kind"] = np.array(["a", "b", "c"])[z]
    elif task == "two_labels":
        frame["kind"] = np.array(["a", "b", "c"])[z]
        frame["price"] = price
    else:
        raise ValueError(task)
    return frame


@pytest.fixture
def make_frame() -> Callable[..., pd.DataFrame]:
    return synthetic_frame


# --- real media files: PNG images and WAV clips, one truncated image and one missing clip ---------

MEDIA_ROWS = 40
CORRUPT_ROW = 5  # its image is a truncated PNG
MISSING_AUDIO_ROW = 9  # its clip does not exist


def write_media_table(root: Path) -> Path:
    """A CSV with image / audio / text columns and a binary label, files under ``root``.

    Bright images and high tones mean "yes", so the signal is learnable; row ``CORRUPT_ROW`` points
    at a truncated PNG and row ``MISSING_AUDIO_ROW`` at a clip that was never written.
    """
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rows = []
    t = np.arange(int(0.2 * 8000)) / 8000  # 0.2 s at 8 kHz
    for i in range(MEDIA_ROWS):
        yes = i % 2 == 0
        pixels = rng.integers(150, 255, (8, 8)) if yes else rng.integers(0, 100, (8, 8))
        Image.fromarray(pixels.astype(np.uint8), "L").save(root / "img" / f"{i}.png")
        if i != MISSING_AUDIO_ROW:
            tone = 0.4 * np.sin(2 * np.pi * (1200 if yes else 300) * t)
            sf.write(root / "wav" / f"{i}.wav", tone, 8000)
        rows.append(
            {
                "img": f"img/{i}.png",
                "clip": f"wav/{i}.wav",
                "text": f"a sample number {i} of the test set",
                "label": "yes" if yes else "no",
            }
        )
    whole = (root / "img" / f"{CORRUPT_ROW}.png").read_bytes()
    (root / "img" / f"{CORRUPT_ROW}.png").write_bytes(whole[: len(whole) // 2])
    table = root / "media.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


@pytest.fixture
def media_table(tmp_path: Path) -> Path:
    return write_media_table(tmp_path)


# Processor options that keep the media fits tiny: 8 px images, 0.2 s clips, 16 mel bins.
MEDIA_OPTIONS = {"img": {"image_size": 8}, "clip": {"duration": 0.2, "n_mels": 16}}


# --- digits-av, built once per session ------------------------------------------------------------


@pytest.fixture(scope="session")
def digits_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``DIGITS_ROWS``-row build of digits-av (its own split column, files beside the CSV)."""
    from polyfuse import build_dataset

    return build_dataset("digits-av", out=tmp_path_factory.mktemp("digits-av"), limit=DIGITS_ROWS)


@pytest.fixture(scope="session")
def digits_model(digits_table: Path, tmp_path_factory: pytest.TempPathFactory):
    """The fused model (with its three baselines) fit on digits-av and saved; (predictor, folder)."""
    import polyfuse

    out = tmp_path_factory.mktemp("digits-model") / "model"
    predictor = polyfuse.fit(
        str(digits_table),
        label="digit",
        out=out,
        processor_options=DIGITS_OPTIONS,
        max_epochs=12,
        batch_size=32,
        **FAST,
    )
    return predictor, out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Folders of a tiny random ViT and Wav2Vec2 (no pretrained image or audio weights ship offline)."""
    from transformers import ViTConfig, ViTModel, Wav2Vec2Config, Wav2Vec2Model

    root = tmp_path_factory.mktemp("hf")
    vit = ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, num_channels=3)  # fmt: skip
    w2v = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)  # fmt: skip
    ViTModel(vit).save_pretrained(root / "vit")
    Wav2Vec2Model(w2v).save_pretrained(root / "w2v")
    return {"image": str(root / "vit"), "audio": str(root / "w2v")}
