"""AV-MNIST built from the shared MNIST and FSDD sources (skipped where ../shared/data is absent),
and the benchmark's models and profiler on random AV-MNIST-shaped tables (always run)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from benchmarks.avmnist.models import MODELS
from benchmarks.avmnist.sanity import MODALITIES

from polyfuse.data.datasets import avmnist, list_datasets
from polyfuse.registry import DATASETS

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LIMIT = 700  # 1% of the 70,000 rows: 550 train / 50 val / 100 test
needs_data = pytest.mark.skipif(not (SOURCE / "mnist" / "mnist.npz").is_file(), reason="no ../shared/data")


def test_registered() -> None:
    names = {d["name"] for d in list_datasets()}
    assert {"avmnist", "avmnist-hard"} <= names
    assert DATASETS.get("avmnist").rows == 70000


def test_specgram_shape_and_scale() -> None:
    tone = np.sin(2 * np.pi * 1000 * np.arange(avmnist.CLIP) / avmnist.RATE)[None]  # 1 kHz
    power = avmnist.specgram(tone)  # [1, freq, time]
    assert power.shape == (1, 112, 112)
    peak_hz = power[0].mean(axis=1).argmax() * avmnist.RATE / avmnist.PAD_TO
    assert abs(peak_hz - 1000) < avmnist.RATE / avmnist.PAD_TO
    # Parseval-style check of the PSD scaling: power summed over bins ~ signal power / bin width
    assert power[0].sum(axis=0).mean() * avmnist.RATE / avmnist.PAD_TO == pytest.approx(0.5, rel=0.05)


def test_missing_source_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POLYFUSE_SHARED_DATA", str(tmp_path))
    assert avmnist.default_source() == tmp_path
    with pytest.raises(FileNotFoundError):
        avmnist.build(tmp_path, limit=10, source=tmp_path / "nowhere")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    if not (SOURCE / "mnist" / "mnist.npz").is_file():
        pytest.skip("no ../shared/data")
    out = {}
    for name in ("avmnist", "avmnist-hard"):
        folder = tmp_path_factory.mktemp(name)
        out[name] = avmnist.load_arrays(name, source=SOURCE, limit=LIMIT, out=folder)
        table = pd.read_csv(folder / avmnist.TABLE)
        out[name]["clip"], out[name]["row"] = table["clip"].to_numpy(), table["row"].to_numpy()
        out[name]["folder"] = folder
    return out


@needs_data
def test_recipe_keeps_three_components() -> None:
    with np.load(SOURCE / "mnist" / "mnist.npz") as mnist:
        _, k_train = avmnist.pca_images(mnist["x_train"], None)
        _, k_test = avmnist.pca_images(mnist["x_test"], None)
    assert k_train == k_test == 3


@needs_data
@pytest.mark.parametrize("name", ["avmnist", "avmnist-hard"])
def test_shapes_and_splits(builds: dict, name: str) -> None:
    d = builds[name]
    assert d["x_image"].shape == (LIMIT, 28, 28) and d["x_image"].dtype == np.uint8
    assert d["x_audio"].shape == (LIMIT, 112, 112) and d["x_audio"].dtype == np.uint8
    counts = {s: int((d["split"] == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 550, "val": 50, "test": 100}  # 55,000 / 5,000 / 10,000 scaled
    assert set(np.unique(d["y"])) == set(range(10))
    # every clip speaks the row's digit
    assert all(int(c.split("_")[0]) == y for c, y in zip(d["clip"], d["y"], strict=True))


@needs_data
def test_recipe_pools(builds: dict) -> None:
    d = builds["avmnist"]
    takes = np.array([int(c[:-4].split("_")[2]) for c in d["clip"]])
    speakers = {c.split("_")[1] for c in d["clip"]}
    assert speakers <= set(avmnist.RECIPE_SPEAKERS)
    assert (takes[d["split"] == "test"] >= 40).all() and (takes[d["split"] != "test"] < 40).all()


@needs_data
def test_hard_holds_speakers_out(builds: dict) -> None:
    d = builds["avmnist-hard"]
    by_split = {s: set(d["clip"][d["split"] == s]) for s in ("train", "val", "test")}
    assert not by_split["val"] & by_split["train"] and not by_split["test"] & by_split["train"]
    speakers = {s: {c.split("_")[1] for c in clips} for s, clips in by_split.items()}
    assert len(speakers["val"]) == len(speakers["test"]) == 1 and not speakers["val"] & speakers["test"]


@needs_data
def test_deterministic_and_subset_of_full_rows(builds: dict, tmp_path: Path) -> None:
    again = avmnist.load_arrays("avmnist-hard", source=SOURCE, limit=LIMIT, out=tmp_path)
    for key in ("x_image", "x_audio", "y", "split"):
        np.testing.assert_array_equal(again[key], builds["avmnist-hard"][key])
    # a smaller build is made of the same rows, with the same bytes
    small = avmnist.load_arrays("avmnist", source=SOURCE, limit=70, out=tmp_path / "small")
    big = builds["avmnist"]
    rows = pd.read_csv(tmp_path / "small" / avmnist.TABLE)["row"].to_numpy()
    at = {r: i for i, r in enumerate(big["row"])}
    assert set(rows) <= set(at)
    np.testing.assert_array_equal(small["x_audio"], big["x_audio"][[at[r] for r in rows]])
    np.testing.assert_array_equal(small["x_image"], big["x_image"][[at[r] for r in rows]])


@needs_data
@pytest.mark.parametrize("name", ["avmnist", "avmnist-hard"])
@pytest.mark.parametrize("modality", ["image", "audio"])
def test_each_modality_beats_chance(builds: dict, name: str, modality: str) -> None:
    """The benchmark's sanity check (a logistic regression on one modality) on the 1% builds."""
    from benchmarks.avmnist.sanity import flat_features, logreg_accuracy

    assert flat_features(builds[name][MODALITIES[modality]][:2], modality).shape == (2, 784)
    assert logreg_accuracy(builds[name], modality, max_iter=100) > 0.25  # chance is 0.1


@needs_data
@pytest.mark.parametrize("name", ["avmnist", "avmnist-hard"])
def test_benchmark_model_trains_one_epoch(builds: dict, name: str) -> None:
    """The benchmark's MultiBench late-fusion model runs end to end on the 1% builds (no timing checks)."""
    from benchmarks.avmnist.run import run

    row = run(name, "multibench_late_fusion", seed=0, epochs=1, arrays=builds[name])
    # LeNet 28 px (13,938) + LeNet 112 px (221,874) + head 240 -> 100 -> 10 (25,110): MultiBench's sizes.
    assert row["params"] == 13_938 + 221_874 + 25_110
    assert 0.0 <= row["test_accuracy"] <= 1.0 and row["best_epoch"] == 0
    assert row["test_accuracy_last"] == row["test_accuracy"]  # one epoch: the last is the best
    assert (
        row["seconds_per_epoch"] > 0 and row["bare_compute_seconds_per_epoch"] > 0 and row["peak_rss_mb"] > 0
    )


@needs_data
@pytest.mark.parametrize("name", ["avmnist", "avmnist-hard"])
def test_load_splits_reads_the_same_tables_as_the_arrays(builds: dict, name: str) -> None:
    """Reading each split's rows from disk (one copy in memory) gives the tables of the loaded arrays."""
    direct = avmnist.load_splits(name, source=SOURCE, limit=LIMIT, out=builds[name]["folder"])
    from_arrays = avmnist.encoded_splits(builds[name])
    for split in ("train", "val", "test"):
        a, b = direct[split], from_arrays[split]
        assert a.row_ids == b.row_ids and len(a) > 0
        for modality in ("image", "audio"):
            assert a.inputs[modality].dtype == torch.uint8
            assert torch.equal(a.inputs[modality], b.inputs[modality])
        assert torch.equal(a.targets["digit"], b.targets["digit"])


@needs_data
def test_load_splits_reads_only_the_chosen_modalities(builds: dict) -> None:
    """An image-only run never reads the spectrograms: only its modality is in the tables."""
    kwargs = {"source": SOURCE, "limit": LIMIT, "out": builds["avmnist"]["folder"]}
    images = avmnist.load_splits("avmnist", splits=("val",), modalities=("image",), **kwargs)["val"]
    both = avmnist.load_splits("avmnist", splits=("val",), **kwargs)["val"]
    assert set(images.inputs) == set(images.mask) == {"image"}
    assert torch.equal(images.inputs["image"], both.inputs["image"])
    with pytest.raises(ValueError, match="unknown AV-MNIST modalities"):
        avmnist.load_splits("avmnist", modalities=("text",), **kwargs)


def _random_table(n: int, seed: int = 0) -> object:
    """An AV-MNIST-shaped ``EncodedTable`` of random pixels: uint8 images and spectrograms."""
    from polyfuse.data.batch import EncodedTable

    g = torch.Generator().manual_seed(seed)
    sizes = {"image": 28, "audio": 112}
    pixels = {m: torch.randint(0, 256, (n, 1, s, s), generator=g) for m, s in sizes.items()}
    return EncodedTable(
        inputs={m: x.to(torch.uint8) for m, x in pixels.items()},
        mask={m: torch.ones(n, dtype=torch.bool) for m in sizes},
        targets={"digit": torch.randint(0, 10, (n,), generator=g)},
        row_ids=list(range(n)),
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_benchmark_models_build_and_predict_ten_digits(name: str) -> None:
    """Every benchmark model reads only its modalities and gives 10 finite logits per row."""
    bench = MODELS[name]
    model = bench.build().eval()
    assert set(model.encoders) == set(bench.modalities)
    with torch.no_grad():
        logits = model(_random_table(3).select(list(bench.modalities)))["digit"]
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


def test_profile_reports_step_time_and_convolutions() -> None:
    """The step profiler times the bare steps and lists the operators, the step's phases included."""
    from benchmarks.avmnist.profile import cycled_batches, profile

    timings, ops, shapes = profile("multibench_late_fusion", cycled_batches(_random_table(80), 40, 2))
    assert set(timings) == {True, False} and all(ms > 0 and faults >= 0 for ms, faults in timings.values())
    assert "convolution" in ops and "forward" in ops and "backward" in ops
    assert "[40, 1, 112, 112]" in shapes  # the first audio convolution's input, by shape


def test_profile_times_both_lenet_choices() -> None:
    """One bullet for the step with and without SingleChannelConv, one per LeNet input width."""
    from benchmarks.avmnist.profile import cycled_batches, kernel_choices

    lines = kernel_choices("multibench_late_fusion", cycled_batches(_random_table(40), 40, 1))
    assert len(lines) == 3 and "with `SingleChannelConv`" in lines[0] and "torch's convolution" in lines[0]
    assert all(re.search(r"NCHW \d+\.\d ms, channels-last \d+\.\d ms", line) for line in lines[1:])


def test_gradnorm_records_every_step_and_counts_the_clipped_ones() -> None:
    """One norm per training step of the epoch; the summary counts and lists the steps over the clip."""
    from benchmarks.avmnist.gradnorm import epoch_grad_norms, summary_line

    norms = epoch_grad_norms("multibench_late_fusion", _random_table(100))
    assert len(norms) == 3 and np.isfinite(norms).all() and (norms > 0).all()  # batches 40, 40, 20
    line = summary_line("v", np.array([1.0, 9.0, 2.0, 10.0, 3.0]))
    assert line == "| v | 5 | 3.00 | 9.96 | 10.00 | 2 | 1, 3 |"


def _random_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """``load_arrays``-shaped random data: 40 train, 10 val and 10 test rows."""
    rng = np.random.default_rng(seed)
    splits = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    n = len(splits)
    return {
        "x_image": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "x_audio": rng.integers(0, 256, (n, 112, 112), dtype=np.uint8),
        "y": np.arange(n) % 10,
        "split": splits,
    }


@pytest.mark.parametrize(("modality", "key"), [("image", "x_image"), ("audio", "x_audio")])
def test_compare_table_reads_back_the_exact_pixels(modality: str, key: str) -> None:
    """The PNG cells of the comparison's table decode to the build's uint8 arrays, pixel for pixel."""
    from benchmarks.avmnist.compare import as_table, compare_options

    from polyfuse.data.modalities.image import ImageProcessor

    arrays = _random_arrays()
    options = compare_options(epochs=1)["processor_options"][modality]
    encoded = ImageProcessor([modality], **options).transform(as_table(arrays), Path("."))
    assert encoded.values.dtype == torch.uint8 and bool(encoded.present.all())
    assert torch.equal(encoded.values[:, 0], torch.from_numpy(arrays[key]))


def test_compare_trains_every_subset_with_the_multibench_lenets(tmp_path: Path) -> None:
    """``polyfuse compare`` on an AV-MNIST-shaped table: both singles and the fused run, LeNet encoders
    of MultiBench's sizes, and a result page naming the run chosen on validation."""
    from benchmarks.avmnist import compare

    result = compare.run(_random_arrays(), tmp_path / "cmp", 1, ("late",), explain=False, verbose=False)
    rows = {r["modalities"]: r for r in result.rows}
    assert set(rows) == {"image", "audio", "image+audio"}
    assert all(r["status"] == "ok" and r["epochs"] == 1 for r in rows.values())
    assert rows["image+audio"]["encoders"] == "image=lenet;audio=lenet"
    # the LeNets of the benchmark (13,938 + 221,874 parameters) are in every run's count
    assert rows["image"]["params"] > 13_938 and rows["audio"]["params"] > 221_874
    page = "\n".join(compare.markdown(result, "avmnist-hard", 1, "python -m benchmarks.avmnist.compare"))
    assert "Chosen on validation" in page and "| val score |" in page and "image+audio | late |" in page
