"""AV-MNIST: an MNIST digit paired with a spoken recording of the same digit (FSDD), rebuilt offline.

``avmnist`` follows the MFAS / MultiBench recipe (Perez-Rua et al., 2019, "MFAS: Multimodal Fusion
Architecture Search"; Liang et al., 2021, "MultiBench"): images keep only the PCA components that
explain 25% of the variance, so the image alone is weak (about 0.5 accuracy), and each clip becomes a
112x112 log spectrogram. ``avmnist-hard`` keeps 4 components, holds one speaker out for test and
one for val, and adds light noise to every waveform.

Sources (read-only, never copied): ``mnist/mnist.npz`` and ``fsdd/recordings/*.wav`` under the shared
data folder. 70,000 PNG+WAV files would be slow to write and read, so the table is stored as arrays:
``images.npy`` uint8 [N, 28, 28], ``spectrograms.npy`` uint8 [N, 112, 112] and ``avmnist.csv``
(split, digit, row, clip); ``load_arrays`` returns them ready for a model.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.datasets.base import COMPLETE, DatasetInfo, build_dataset, cache_dir
from polyfuse.registry import DATASETS

TABLE = "avmnist.csv"
IMAGES = "images.npy"
SPECTROGRAMS = "spectrograms.npy"
_FILES = {"image": IMAGES, "audio": SPECTROGRAMS}  # modality -> its array in a build
N_VAL = 5000  # the last 5,000 MNIST training rows: 55,000 train / 5,000 val / 10,000 test
# avmnist keeps the most components whose cumulative explained variance stays within 25% ("remove 75%
# of the energy"): k = 3 on MNIST (22.97% train, 23.73% test). Reading it as "the fewest above 25%" gives 4.
VARIANCE = 0.25
HARD_COMPONENTS = 4
# Reconstructions are centred projections (no mean added back), so pixels lie near [-1, 1];
# they are mapped linearly [-1, 1] -> [0, 255] and clipped (99.8% of pixels lie in [-0.56, 0.68]).
IMAGE_RANGE = (-1.0, 1.0)
RECIPE_SPEAKERS = ("jackson", "nicolas", "theo", "yweweler")
RECIPE_TRAIN_TAKES = 40  # takes 0-39 -> train pool, 40-49 -> test pool
ALL_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
# Spectrogram as matplotlib.mlab.specgram(x, NFFT=200, Fs=8000, noverlap=130, pad_to=223):
# 223-point FFTs give 112 one-sided bins. Each clip is zero-padded (centred) or centre-cropped to
# exactly one second, 8,000 samples, and a 25 ms window with a 70-sample hop gives
# (8000 - 200) // 70 + 1 = 112 frames. FSDD clips are 0.14-2.3 s (median 0.42 s), so under 1% are cropped.
RATE = 8000
CLIP = 8000
NFFT, NOVERLAP, PAD_TO = 200, 130, 223
DB_RANGE = 80.0  # log power kept within 80 dB of each clip's peak, mapped linearly to 0-255
HARD_SNR_DB = 20.0  # avmnist-hard: white noise at 20 dB below the clip's power


def default_source() -> Path:
    """$POLYFUSE_SHARED_DATA, else ``../shared/data`` from the working directory or the repository."""
    if os.environ.get("POLYFUSE_SHARED_DATA"):
        return Path(os.environ["POLYFUSE_SHARED_DATA"]).expanduser()
    repo = Path(__file__).resolve().parents[4]  # src/polyfuse/data/datasets/avmnist.py -> repo root
    for candidate in (Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"):
        if _has_sources(candidate):
            return candidate
    raise FileNotFoundError(
        "AV-MNIST needs MNIST and FSDD: put mnist/mnist.npz (x_train, y_train, x_test, y_test) and "
        "fsdd/recordings/{digit}_{speaker}_{take}.wav in a folder and set POLYFUSE_SHARED_DATA to it, "
        "or place it at ../shared/data next to the repository."
    )


def _has_sources(folder: Path) -> bool:
    return (folder / "mnist" / "mnist.npz").is_file() and (folder / "fsdd" / "recordings").is_dir()


# ---------------------------------------------------------------------------------------------- images


def pca_images(images: np.ndarray, n_components: int | None) -> tuple[np.ndarray, int]:
    """Centred PCA reconstruction of [N, 28, 28] uint8 images, fitted on exactly these images.

    Args:
        images: the images to fit on and reconstruct (all train, or all test: fitted separately).
        n_components: components to keep; ``None`` keeps the most explaining at most ``VARIANCE``.

    Returns:
        uint8 [N, 28, 28] reconstructions (mapped with ``IMAGE_RANGE``) and the number kept.
    """
    from sklearn.decomposition import PCA

    x = images.reshape(len(images), -1).astype(np.float64) / 255.0  # [N, 784]
    pca = PCA(n_components=20, svd_solver="covariance_eigh").fit(x)
    k = n_components
    if k is None:
        k = max(int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), VARIANCE, side="right")), 1)
    comps = pca.components_[:k]  # [k, 784]
    recon = (x - pca.mean_) @ comps.T @ comps  # projection without the mean added back
    low, high = IMAGE_RANGE
    scaled = np.clip(np.round((recon - low) / (high - low) * 255.0), 0, 255)
    return scaled.astype(np.uint8).reshape(images.shape), k


# ----------------------------------------------------------------------------------------------- audio


def fit_clip(wave: np.ndarray) -> np.ndarray:
    """Zero-pad (centred) or centre-crop a waveform to ``CLIP`` samples."""
    if len(wave) >= CLIP:
        start = (len(wave) - CLIP) // 2
        return wave[start : start + CLIP]
    out = np.zeros(CLIP, dtype=wave.dtype)
    start = (CLIP - len(wave)) // 2
    out[start : start + len(wave)] = wave
    return out


def specgram(waves: np.ndarray) -> np.ndarray:
    """One-sided PSD like ``matplotlib.mlab.specgram`` (Hann window, no detrend), float [B, 112, 112].

    Rows are frequency bins (0 Hz first), columns are time frames, as mlab returns them.
    """
    step = NFFT - NOVERLAP
    n_frames = (waves.shape[1] - NOVERLAP) // step
    window = np.hanning(NFFT)  # mlab.window_hanning
    starts = np.arange(n_frames) * step
    frames = waves[:, starts[:, None] + np.arange(NFFT)] * window  # [B, T, NFFT]
    spec = np.abs(np.fft.rfft(frames, n=PAD_TO, axis=-1)) ** 2  # [B, T, 112]
    spec /= RATE * (window**2).sum()
    spec[..., 1:] *= 2.0  # one-sided: every bin but DC (PAD_TO is odd, so no Nyquist bin)
    return spec.transpose(0, 2, 1)


def to_uint8(power: np.ndarray) -> np.ndarray:
    """Log power in dB, kept within ``DB_RANGE`` of each spectrogram's peak, mapped to 0-255."""
    db = 10.0 * np.log10(power + 1e-20)
    top = db.max(axis=(1, 2), keepdims=True)
    scaled = (np.clip(db, top - DB_RANGE, top) - (top - DB_RANGE)) / DB_RANGE * 255.0
    return np.round(scaled).astype(np.uint8)


def read_clip(path: Path) -> np.ndarray:
    """A recording as float64 in [-1, 1], fitted to ``CLIP`` samples."""
    import soundfile as sf

    wave, rate = sf.read(path, dtype="float64")
    assert rate == RATE, f"{path}: expected {RATE} Hz, got {rate}"
    return fit_clip(wave if wave.ndim == 1 else wave.mean(axis=1))


def add_noise(waves: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray:
    """White noise at ``HARD_SNR_DB`` below each clip's power; row ``r``'s noise depends only on (seed, r)."""
    out = np.empty_like(waves)
    for j, (wave, row) in enumerate(zip(waves, rows, strict=True)):
        rng = np.random.default_rng([seed, 3, int(row)])
        power = np.mean(wave**2) * CLIP / max(int(np.count_nonzero(wave)), 1)  # power of the speech part
        out[j] = wave + rng.normal(0.0, np.sqrt(power / 10 ** (HARD_SNR_DB / 10)), CLIP)
    return out


# ---------------------------------------------------------------------------------------------- pairing


def clip_pools(recordings: Path, hard: bool, seed: int) -> dict[str, dict[int, list[str]]]:
    """Per split, per digit: the clip file names it draws from, sorted by name."""
    if hard:
        order = np.random.default_rng([seed, 1]).permutation(len(ALL_SPEAKERS))
        test, val = ALL_SPEAKERS[order[0]], ALL_SPEAKERS[order[1]]
        speakers = {"train": set(ALL_SPEAKERS) - {test, val}, "val": {val}, "test": {test}}
        takes = {split: range(50) for split in speakers}
    else:  # val rows are MNIST training rows, so they draw from the train pool
        speakers = {split: set(RECIPE_SPEAKERS) for split in ("train", "val", "test")}
        first, rest = range(RECIPE_TRAIN_TAKES), range(RECIPE_TRAIN_TAKES, 50)
        takes = {"train": first, "val": first, "test": rest}
    names = sorted(p.name for p in recordings.glob("*.wav"))
    pools: dict[str, dict[int, list[str]]] = {s: {d: [] for d in range(10)} for s in speakers}
    for name in names:
        digit, speaker, take = name[:-4].split("_")
        for split in pools:
            if speaker in speakers[split] and int(take) in takes[split]:
                pools[split][int(digit)].append(name)
    return pools


def plan(labels: np.ndarray, splits: np.ndarray, pools: dict[str, dict[int, list[str]]]) -> pd.DataFrame:
    """Pair every row: the n-th row of digit d in a split takes ``pool[d][n mod len(pool[d])]``.

    For ``avmnist`` the n-th sample counts over all 60,000 MNIST training rows (val included, as they
    share the train pool) and over the 10,000 test rows.
    """
    clips = np.empty(len(labels), dtype=object)
    pool_of = np.where(splits == "test", "test", np.where(splits == "val", "val", "train"))
    for split in pools:
        for d in range(10):
            idx = np.flatnonzero((pool_of == split) & (labels == d))
            pool = pools[split][d]
            clips[idx] = [pool[n % len(pool)] for n in range(len(idx))]
    return pd.DataFrame({"split": splits, "digit": labels, "clip": clips})


def select(frame: pd.DataFrame, limit: int | None) -> np.ndarray:
    """Rows to build: all, or about ``limit`` rows, each split in proportion, round-robin over digits."""
    if limit is None or limit >= len(frame):
        return np.arange(len(frame))
    chosen = []
    for split in ("train", "val", "test"):
        idx = np.flatnonzero(frame["split"].to_numpy() == split)
        quota = max(int(round(limit * len(idx) / len(frame))), 1)
        digits = frame["digit"].to_numpy()[idx]
        rank = np.empty(len(idx), dtype=int)
        for d in np.unique(digits):
            rank[digits == d] = np.arange(int((digits == d).sum()))
        chosen.append(idx[np.lexsort((digits, rank))[:quota]])  # first rows of each digit in turn
    return np.sort(np.concatenate(chosen))


# ------------------------------------------------------------------------------------------------ build


def generate(
    source: Path, hard: bool, seed: int, limit: int | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The table (split, digit, row, clip), images uint8 [N, 28, 28] and spectrograms uint8 [N, 112, 112]."""
    with np.load(source / "mnist" / "mnist.npz") as mnist:
        x_train, y_train, x_test, y_test = (mnist[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    k = HARD_COMPONENTS if hard else None
    images = np.concatenate([pca_images(x_train, k)[0], pca_images(x_test, k)[0]])  # fitted separately
    labels = np.concatenate([y_train, y_test]).astype(int)
    splits = np.array(["train"] * (len(x_train) - N_VAL) + ["val"] * N_VAL + ["test"] * len(x_test))
    recordings = source / "fsdd" / "recordings"
    frame = plan(labels, splits, clip_pools(recordings, hard, seed))
    rows = select(frame, limit)
    frame = frame.iloc[rows].reset_index(drop=True)
    frame.insert(2, "row", rows)  # the row of the full build: limited builds are its subsets
    spectrograms = spectrograms_for(frame, recordings, hard, seed)
    return frame, images[rows], spectrograms


def spectrograms_for(
    frame: pd.DataFrame, recordings: Path, hard: bool, seed: int, chunk: int = 512
) -> np.ndarray:
    """uint8 [N, 112, 112]: each clip once for ``avmnist``; per row (own noise) for ``avmnist-hard``."""
    names = sorted(set(frame["clip"]))
    waves = np.stack([read_clip(recordings / n) for n in names])  # [C, CLIP]
    position = {n: i for i, n in enumerate(names)}
    which = frame["clip"].map(position).to_numpy()
    if not hard:
        return to_uint8(specgram(waves))[which]
    out = np.empty((len(frame), PAD_TO // 2 + 1, PAD_TO // 2 + 1), dtype=np.uint8)
    rows = frame["row"].to_numpy()
    for lo in range(0, len(frame), chunk):
        part = slice(lo, lo + chunk)
        out[part] = to_uint8(specgram(add_noise(waves[which[part]], rows[part], seed)))
    return out


def build(
    out: Path, seed: int = 0, limit: int | None = None, source: Path | None = None, hard: bool = False
) -> Path:
    """Build AV-MNIST (or avmnist-hard) from ``source`` into ``out``; returns the table's path."""
    out = Path(out)
    frame, images, spectrograms = generate(Path(source) if source else default_source(), hard, seed, limit)
    np.save(out / IMAGES, images)
    np.save(out / SPECTROGRAMS, spectrograms)
    frame.to_csv(out / TABLE, index=False)
    return out / TABLE


def load_arrays(
    name: str = "avmnist",
    source: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    out: Path | None = None,
) -> dict[str, np.ndarray]:
    """Build (or reuse) ``avmnist`` / ``avmnist-hard`` and load it as arrays.

    Args:
        name: ``"avmnist"`` or ``"avmnist-hard"``.
        source: folder with mnist/ and fsdd/; ``None`` uses ``default_source()``.
        limit: build about this many rows (splits in proportion), for tests.
        seed: only ``avmnist-hard`` uses it (held-out speakers, noise).
        out: the folder to build into; ``None`` means the dataset cache.

    Returns:
        ``x_image`` uint8 [N, 28, 28], ``x_audio`` uint8 [N, 112, 112], ``y`` int [N], ``split`` str [N].
    """
    table = table_path(name, source, limit, seed, out)
    frame = pd.read_csv(table)
    return {
        "x_image": np.load(table.parent / IMAGES),
        "x_audio": np.load(table.parent / SPECTROGRAMS),
        "y": frame["digit"].to_numpy(),
        "split": frame["split"].to_numpy().astype(str),
    }


def table_path(name: str, source: str | Path | None, limit: int | None, seed: int, out: Path | None) -> Path:
    """The build's table, built first unless a complete build is there (arguments as ``load_arrays``)."""
    if source is None:
        return build_dataset(name, out=out, seed=seed, limit=limit)
    # the same marker protocol as build_dataset, with an explicit source
    folder = Path(out) if out is not None else _source_folder(name, Path(source), seed, limit)
    if not (folder / COMPLETE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        build(folder, seed=seed, limit=limit, source=Path(source), hard=name == "avmnist-hard")
        (folder / COMPLETE).write_text(TABLE + "\n")
    return folder / TABLE


def _source_folder(name: str, source: Path, seed: int, limit: int | None) -> Path:
    import hashlib

    tag = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]
    suffix = f"-rows{limit}" if limit is not None else ""
    return cache_dir() / "datasets" / f"{name}-v{DATASETS.get(name).version}-seed{seed}-src{tag}{suffix}"


def _register(name: str, hard: bool, description: str) -> Any:
    return DATASETS.register(name)(
        DatasetInfo(
            name=name,
            description=description,
            label="digit",
            split="split",
            rows=70000,
            modalities={"image": "image", "audio": "audio"},
            version=1,
            builder=functools.partial(build, hard=hard),
        )
    )


INFO = _register(
    "avmnist",
    False,
    "MNIST digits reduced to 3 PCA components paired with FSDD spoken digits as spectrograms (MFAS recipe).",
)
HARD_INFO = _register(
    "avmnist-hard",
    True,
    "AV-MNIST with 4 PCA components, speakers held out for val and test, and noisy audio.",
)


def read_rows(path: Path, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted) of a ``.npy`` file, read with plain file reads: only they are in memory.

    ``np.load(path)[rows]`` holds the whole file and the selection at once (1.8 GB for AV-MNIST's
    spectrograms when a split is not one block of rows); a memory map would count every page it
    touched as resident too.
    """
    header = np.load(path, mmap_mode="r")  # shape, dtype and data offset only: no page is read
    shape, dtype, offset, c_order = header.shape, header.dtype, int(header.offset), header.flags.c_contiguous
    del header
    if not c_order:
        raise ValueError(f"{path}: only C-ordered arrays are supported")
    row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
    out = np.empty((len(rows), *shape[1:]), dtype=dtype)
    if len(rows) == 0:
        return out
    with open(path, "rb") as f:
        flat = memoryview(out).cast("B")  # type: ignore[arg-type]  # the output's bytes, row after row
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # starts of runs of consecutive rows
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            f.seek(offset + int(rows[start]) * row_bytes)
            f.readinto(flat[int(start) * row_bytes : int(stop) * row_bytes])
    return out


def load_splits(
    name: str = "avmnist",
    source: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    out: Path | None = None,
    label: str = "digit",
    splits: tuple[str, ...] = ("train", "val", "test"),
    modalities: tuple[str, ...] = ("image", "audio"),
) -> dict[str, Any]:
    """``EncodedTable``s of some splits of a build, reading only their rows from disk.

    Memory holds one copy of the chosen splits and modalities (0.93 GB for all of a full build),
    also for ``avmnist-hard``, whose splits are interleaved rows; a training run can load the test
    split only after training, and an image-only run never reads the spectrograms. Other arguments
    as ``load_arrays``.
    """
    unknown = set(modalities) - set(_FILES)
    if unknown:
        raise ValueError(f"unknown AV-MNIST modalities {sorted(unknown)}; choose from {sorted(_FILES)}")
    table = table_path(name, source, limit, seed, out)
    frame = pd.read_csv(table)
    which, digits = frame["split"].to_numpy().astype(str), frame["digit"].to_numpy()
    tables = {}
    for split in splits:
        rows = np.flatnonzero(which == split)
        arrays = {m: read_rows(table.parent / _FILES[m], rows) for m in modalities}
        tables[split] = _encoded(arrays, digits[rows], rows, label)
    return tables


def encoded_splits(arrays: dict[str, np.ndarray], label: str = "digit") -> dict[str, Any]:
    """``load_arrays`` output as train / val / test ``EncodedTable``s, ready for ``train_model``.

    Pixels stay uint8 (encoders scale them to 0..1 per batch): 60,000 spectrograms take 0.75 GB
    instead of 3 GB as float32 (MultiBench keeps float64: 6 GB). A split stored as one block of
    rows (both splits of ``avmnist``) is a view of ``arrays``, not a copy.
    """
    tables = {}
    for split in ("train", "val", "test"):
        rows = np.flatnonzero(arrays["split"] == split)
        n = len(rows)
        take: Any = slice(rows[0], rows[-1] + 1) if n and rows[-1] - rows[0] == n - 1 else rows
        inputs = {"image": arrays["x_image"][take], "audio": arrays["x_audio"][take]}
        tables[split] = _encoded(inputs, arrays["y"][rows], rows, label)
    return tables


def _encoded(arrays: dict[str, np.ndarray], y: np.ndarray, rows: np.ndarray, label: str) -> Any:
    """Images [N, 1, 28, 28] and spectrograms [N, 1, 112, 112], uint8, as one ``EncodedTable``."""
    import torch

    from polyfuse.data.batch import EncodedTable

    n = len(rows)
    return EncodedTable(
        inputs={m: torch.from_numpy(a).unsqueeze(1) for m, a in arrays.items()},
        mask={m: torch.ones(n, dtype=torch.bool) for m in arrays},
        targets={label: torch.from_numpy(y.astype(np.int64))},
        row_ids=rows.tolist(),
    )
