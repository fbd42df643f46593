"""digits-av: handwritten digits, the spoken digit and a short note, corrupted so fusion pays.

Images are scikit-learn's 1,797 real 8x8 handwritten digits; audio is the digit's name spoken
by espeak-ng in many voices, rates and pitches; text is a note on parity / size / primality.
On most rows one of the two senses is heavily corrupted (the image mostly hidden, or the voice
drowned in noise), never both, so each modality alone fails on its own subset of rows.
Voices are held out: some test (and val) voices are never heard in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.datasets import corrupt, hints
from polyfuse.data.datasets.base import DatasetInfo
from polyfuse.registry import DATASETS

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
RATES = (120, 150, 175, 205, 240)  # words per minute
PITCHES = (20, 35, 50, 65, 80)  # espeak 0-99
SPLITS = {"train": 0.70, "val": 0.15, "test": 0.15}
HELD_OUT = {"val": 8, "test": 12}  # voices heard only in that split
HELD_OUT_SHARE = 0.5  # share of val / test rows spoken by a held-out voice
# Per row: which sense is heavily corrupted. One at a time, so a fused model can always recover;
# tuned so that a single modality stays near 0.6-0.7 accuracy and a fused one above 0.9.
CORRUPTION = {"none": 0.2, "image": 0.4, "audio": 0.4, "both": 0.0}
TABLE = "digits-av.csv"
META = "digits-av.meta.csv"  # per-row generation details (voice, SNR ...), not model inputs


@dataclass
class Generated:
    """The dataset in memory: per-row metadata, images [N, 32, 32] uint8, audio [N, 16000] int16."""

    meta: pd.DataFrame
    images: np.ndarray
    audio: np.ndarray


def voices(seed: int) -> dict[str, list[str]]:
    """Split the espeak voices (accent+variant) into train / val-only / test-only, by seed."""
    from polyfuse.data.datasets.speech import available_variants

    shipped = set(available_variants())
    names = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS if v in shipped]
    order = np.random.default_rng([seed, 1]).permutation(len(names))
    shuffled = [names[i] for i in order]
    n_val, n_test = HELD_OUT["val"], HELD_OUT["test"]
    return {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }


def assign_splits(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stratified train/val/test labels in the proportions of ``SPLITS``."""
    out = np.empty(len(digits), dtype=object)
    for d in np.unique(digits):
        idx = rng.permutation(np.flatnonzero(digits == d))
        n_train = int(round(len(idx) * SPLITS["train"]))
        n_val = int(round(len(idx) * SPLITS["val"]))
        out[idx[:n_train]] = "train"
        out[idx[n_train : n_train + n_val]] = "val"
        out[idx[n_train + n_val :]] = "test"
    return out


def select(digits: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Row indices to build: all, or ``limit`` rows spread evenly over the digits."""
    if limit is None or limit >= len(digits):
        return np.arange(len(digits))
    rank = np.empty(len(digits), dtype=int)
    for d in np.unique(digits):
        idx = rng.permutation(np.flatnonzero(digits == d))
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((digits, rank))  # round-robin over digits
    return np.sort(order[:limit])


def plan(digits: np.ndarray, seed: int, limit: int | None = None) -> pd.DataFrame:
    """Decide everything about each row (split, voice, corruption, note) before rendering."""
    rng = np.random.default_rng([seed, 0])
    split = assign_splits(digits, rng)
    pool = voices(seed)
    rows = []
    for i in select(digits, limit, rng):
        row_rng = np.random.default_rng([seed, 2, int(i)])
        rows.append(_plan_row(int(i), int(digits[i]), str(split[i]), pool, row_rng))
    return pd.DataFrame(rows)


def _plan_row(i: int, digit: int, split: str, pool: dict[str, list[str]], rng: np.random.Generator) -> dict:
    held_out = split != "train" and rng.random() < HELD_OUT_SHARE
    speakers = pool[split] if held_out else pool["train"]
    corruption = list(CORRUPTION)[int(rng.choice(len(CORRUPTION), p=list(CORRUPTION.values())))]
    kind = hints.draw_kind(rng)
    return {
        "source_index": i,
        "digit": digit,
        "split": split,
        "voice": speakers[int(rng.integers(len(speakers)))],
        "rate": int(rng.choice(RATES)),
        "pitch": int(rng.choice(PITCHES)),
        "image_heavy": corruption in ("image", "both"),
        "audio_heavy": corruption in ("audio", "both"),
        "note_kind": kind,
        "text": hints.note_for(digit, kind, rng),
        "row_seed": int(rng.integers(2**31)),
    }


def generate(seed: int = 0, limit: int | None = None, workers: int = 2) -> Generated:
    """Build every row in memory: plan, synthesise speech, render and corrupt."""
    from sklearn.datasets import load_digits

    from polyfuse.data.datasets.speech import Utterance, synthesise

    source = load_digits()
    meta = plan(source.target, seed, limit)
    utterances = [Utterance(WORDS[r.digit], r.voice, r.rate, r.pitch) for r in meta.itertuples()]
    source_rate, clips = synthesise(utterances, seed=seed, workers=workers)
    images, audio, snrs = [], [], []
    for r, utt in zip(meta.itertuples(), utterances, strict=True):
        rng = np.random.default_rng(r.row_seed)
        how_img = corrupt.HEAVY_IMAGE if r.image_heavy else corrupt.MILD_IMAGE
        images.append(corrupt.render_image(source.images[r.source_index], how_img, rng))
        low, high = corrupt.HEAVY_SNR_DB if r.audio_heavy else corrupt.MILD_SNR_DB
        how_audio = corrupt.AudioCorruption(snr_db=float(rng.uniform(low, high)), lowpass=bool(r.audio_heavy))
        audio.append(corrupt.render_audio(clips[utt], source_rate, how_audio, rng))
        snrs.append(round(how_audio.snr_db, 2))
    meta["snr_db"] = snrs
    return Generated(meta, np.stack(images), np.stack(audio))


def write(data: Generated, out: Path) -> Path:
    """Write images/*.png, audio/*.wav, the table and the metadata side table under ``out``."""
    import soundfile as sf
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    records = []
    for k, r in enumerate(data.meta.itertuples()):
        image, audio = f"images/{k:05d}.png", f"audio/{k:05d}.wav"
        Image.fromarray(data.images[k], mode="L").save(out / image)
        sf.write(out / audio, data.audio[k], corrupt.SAMPLE_RATE, subtype="PCM_16")
        records.append({"image": image, "audio": audio, "text": r.text, "split": r.split, "digit": r.digit})
    pd.DataFrame(records).to_csv(out / TABLE, index=False)
    data.meta.drop(columns=["row_seed"]).to_csv(out / META, index_label="row")
    return out / TABLE


def build(out: Path, seed: int = 0, limit: int | None = None) -> Path:
    """Generate digits-av and write it to ``out``; returns the table's path."""
    return write(generate(seed, limit), Path(out))


INFO: Any = DATASETS.register("digits-av")(
    DatasetInfo(
        name="digits-av",
        description=(
            "Handwritten digit images, the spoken digit and a hint note; each sense is corrupted on "
            "its own rows so only a fused model does well."
        ),
        label="digit",
        split="split",
        rows=1797,
        modalities={"image": "image", "audio": "audio", "text": "text"},
        version=1,
        builder=build,
    )
)
