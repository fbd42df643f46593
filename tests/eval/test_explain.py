"""explain on trained models: Shapley by masking, attributions, robustness, errors, files and CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import polyfuse
from conftest import CLASS_WORDS, FAST, MEDIA_ROWS, synthetic_frame
from polyfuse.config import FusionConfig, ModelConfig
from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.eval.attribution import attribute
from polyfuse.eval.contributions import modality_shapley
from polyfuse.eval.errors import attention_weights, fix_break, presence_patterns, read_modality_weights
from polyfuse.eval.evaluate import evaluate_table
from polyfuse.eval.gradients import differentiable
from polyfuse.eval.probe import Probe, is_right
from polyfuse.eval.robustness import DROP_RATES, robustness
from polyfuse.models.build import build_model

PNG = b"\x89PNG\r\n\x1a\n"
NO_TEXT = 15  # explained rows whose note is missing
EXPLAIN_KEYS = {
    "metric", "modalities", "rows", "presence", "fix_break", "robustness", "correlation", "attention",
    "confusion", "features", "figures",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    """A 3-epoch model on numbers + a category (tabular) and a note (text), trained with modality
    dropout; and 80 labelled rows to explain, the first NO_TEXT without their note."""
    frame = synthetic_frame(240, seed=1)
    predictor = polyfuse.fit(frame, label="kind", modality_dropout=0.3, max_epochs=3, baselines=False, **FAST)
    rows = frame.iloc[-80:].copy()
    rows.iloc[:NO_TEXT, rows.columns.get_loc("text")] = None
    return predictor, rows


@pytest.fixture(scope="module")
def probe(tiny):
    predictor, rows = tiny
    table, _ = predictor.encode(rows, targets=True)
    return Probe.build(predictor.model, table, predictor.schema.labels[0])


def test_masking_shapley_is_efficient_and_v_all_is_the_models_own_metric(tiny, probe):
    predictor, _ = tiny
    result = modality_shapley(probe)
    everyone, nobody = frozenset(probe.modalities), frozenset()
    assert len(result.coalition_metric) == 4
    total = sum(result.values.values())
    assert total == pytest.approx(
        result.coalition_metric[everyone] - result.coalition_metric[nobody], abs=1e-6
    )
    own = evaluate_table(predictor.model, predictor.schema, probe.table)["accuracy"]
    assert result.coalition_metric[everyone] == pytest.approx(own, abs=1e-12)
    assert result.coalition_metric[everyone] > result.coalition_metric[nobody] + 0.2  # the model learnt


def test_per_sample_shapley_rows_sum_to_the_true_class_probability_gain(probe):
    result = modality_shapley(probe)
    frame = result.per_sample
    assert list(frame.columns) == ["row_id", *probe.modalities]
    assert frame["row_id"].tolist() == list(probe.table.row_ids)
    gain = probe.scores(result.outputs[frozenset(probe.modalities)]) - probe.scores(
        result.outputs[frozenset()]
    )
    np.testing.assert_allclose(frame[probe.modalities].sum(axis=1), gain, atol=1e-6)
    # A modality absent from a row is a dummy player there: exactly zero.
    absent = ~probe.present["text"].numpy()
    assert absent.sum() == NO_TEXT
    assert np.all(frame.loc[absent, "text"].to_numpy() == 0.0)


def test_robustness_ends_at_the_coalition_without_the_modality(probe):
    shapley = modality_shapley(probe)
    curves = robustness(probe, seed=0)
    metric_all = shapley.coalition_metric[frozenset(probe.modalities)]
    for m in probe.modalities:
        drop = curves[m]["drop"]
        assert [r for r, _ in drop] == list(DROP_RATES)
        assert drop[0][1] == pytest.approx(metric_all, abs=1e-12)
        without = frozenset(probe.modalities) - {m}
        assert drop[-1][1] == pytest.approx(shapley.coalition_metric[without], abs=1e-12)
        assert curves[m]["noise"][0] == [0.0, pytest.approx(metric_all, abs=1e-12)]
    assert curves["tabular"]["noise_on"] == "input"  # standardised numbers
    assert curves["text"]["noise_on"] == "embedding"  # token ids cannot be noised
    assert curves["tabular"]["noise"][-1][1] < metric_all  # 2 std of noise on the numbers hurts


def test_fix_break_and_presence_partition_the_rows(probe):
    shapley = modality_shapley(probe)
    fused = shapley.outputs[frozenset(probe.modalities)]
    singles = {m: shapley.outputs[frozenset({m})] for m in probe.modalities}
    result = fix_break(probe, fused, singles)
    right = is_right("multiclass", probe.targets, fused, 0.0)
    for m, counts in result.items():
        alone = is_right("multiclass", probe.targets, singles[m], 0.0)
        assert counts["fixed"] == int((right & ~alone).sum())
        assert counts["broken"] == int((~right & alone).sum())
        assert counts["fixed"] + counts["broken"] + counts["both_right"] + counts["both_wrong"] == len(probe)
        ids = list(probe.table.row_ids)
        assert all(not alone[ids.index(r)] and right[ids.index(r)] for r in counts["examples_fixed"])
    patterns = presence_patterns(probe, fused)
    assert sum(p["rows"] for p in patterns) == len(probe)
    assert {tuple(p["present"]): p["rows"] for p in patterns}[("tabular",)] == NO_TEXT


def test_tabular_permutation_importance_and_text_tokens(tiny, probe):
    predictor, _ = tiny
    kinds = {s.name: s.kind for s in predictor.schema.inputs}
    found = attribute(probe, kinds, predictor.preprocessor.processors, samples=16, steps=24, seed=0)
    importance = found["tabular"].summary
    assert set(importance) == {"x1", "x2", "colour"}
    assert importance["x1"] > importance["x2"]  # x1 carries the class, x2 is noise
    text = found["text"].summary
    top = [token for token, _, _ in text["top_tokens"][:3]]
    assert len(set(top) & set(CLASS_WORDS)) >= 2, text["top_tokens"]
    assert text["convergence_delta"] < 0.05  # IG completeness: attributions add up to the score change
    assert text["samples"] == 16 and len(text["examples"]) == 3


def test_cached_only_modality_is_skipped_by_attribution_and_noised_on_its_embedding(tiny, probe):
    predictor, _ = tiny
    table = probe.table
    cached = EncodedTable(
        inputs={"tabular": table.inputs["tabular"]},
        mask=table.mask,
        targets=table.targets,
        cached={"text": probe.features["text"].values},
        row_ids=table.row_ids,
    )
    text = predictor.model.encoders["text"]
    text.requires_grad_(False)  # a cache stands in only for a frozen encoder
    try:
        only_cached = Probe.build(predictor.model, cached, predictor.schema.labels[0])
        kinds = {s.name: s.kind for s in predictor.schema.inputs}
        found = attribute(only_cached, kinds, predictor.preprocessor.processors, samples=4, steps=8)
        curves = robustness(only_cached, levels=(0.0, 1.0))
    finally:
        text.requires_grad_(True)
    torch.testing.assert_close(only_cached.features["text"].values, probe.features["text"].values)
    assert "cached" in found["text"].summary["skipped"]
    assert set(found["tabular"].summary) == {"x1", "x2", "colour"}
    assert curves["text"]["noise_on"] == "embedding"


def test_differentiable_unfreezes_only_for_the_block():
    encoder = torch.nn.Linear(2, 2)
    encoder.frozen = True  # type: ignore[assignment]
    with differentiable(encoder):
        assert encoder.frozen is False
    assert encoder.frozen is True


def _rebuilt(tiny, fusion: str, **params) -> Probe:
    """An untrained model with the tiny model's encoders and heads but another fusion."""
    predictor, rows = tiny
    config = ModelConfig(
        predictor.model_config.encoders, FusionConfig(fusion, params), predictor.model_config.heads
    )
    torch.manual_seed(0)
    model = build_model(config, predictor.preprocessor).eval()
    table, _ = predictor.encode(rows, targets=True)
    return Probe.build(model, table, predictor.schema.labels[0])


def test_attention_weights_from_cls_attention_and_from_modality_weights(tiny, probe):
    assert attention_weights(probe) is None  # concat has no weights
    fixed = _rebuilt(tiny, "weighted_fixed", weights={"tabular": 1.0, "text": 3.0})
    # Per row the weights 1:3 renormalised over the present modalities; means over present rows.
    both = len(fixed) - NO_TEXT
    expected = {"tabular": (both * 0.25 + NO_TEXT * 1.0) / len(fixed), "text": 0.75}
    assert attention_weights(fixed) == {m: pytest.approx(v, abs=1e-6) for m, v in expected.items()}
    attn = _rebuilt(tiny, "attention", hidden_dim=16, num_heads=2, num_layers=1)
    weights = attention_weights(attn)
    assert weights is not None and set(weights) == {"tabular", "text"}
    with torch.no_grad():
        attn.model.fusion({m: f.values for m, f in attn.features.items()}, attn.present)
    manual = attn.model.fusion.cls_attention()
    here = attn.present["text"]
    assert weights["text"] == pytest.approx(float(manual["text"][here].mean()), abs=1e-6)
    assert weights["tabular"] == pytest.approx(float(manual["tabular"].mean()), abs=1e-6)
    assert 0 < weights["text"] < 1 and 0 < weights["tabular"] < 1


class _Weights(torch.nn.Module):
    """A stand-in fusion whose weights come as a tensor, in the sorted order of ``names``."""

    names = ["a", "b"]

    def __init__(self, weights: torch.Tensor | None) -> None:
        super().__init__()
        self.weights = weights

    def modality_weights(self) -> torch.Tensor | None:
        return self.weights


def test_read_modality_weights_accepts_tensors_in_sorted_order():
    per_model = read_modality_weights(_Weights(torch.tensor([0.2, 0.8])), ["b", "a"])
    assert {m: float(w) for m, w in per_model.items()} == {"a": pytest.approx(0.2), "b": pytest.approx(0.8)}
    per_row = read_modality_weights(_Weights(torch.tensor([[0.1, 0.9], [0.6, 0.4]])), ["a", "b"])
    assert per_row["b"].tolist() == pytest.approx([0.9, 0.4])
    assert read_modality_weights(_Weights(None), ["a", "b"]) is None
    assert read_modality_weights(torch.nn.Linear(2, 2), ["a", "b"]) is None


def test_a_token_level_fusion_is_explained_on_tokens(tiny):
    cross = _rebuilt(tiny, "cross_attention", hidden_dim=16, num_heads=2, num_layers=1)
    text = cross.features["text"]
    assert text.values.dim() == 3 and text.valid is not None  # tokens [N, T, D] with validity
    assert cross.embeddings()["text"].shape == (len(cross), text.values.shape[-1])
    shapley = modality_shapley(cross)
    total = sum(shapley.values.values())
    everyone = shapley.coalition_metric[frozenset(cross.modalities)]
    assert total == pytest.approx(everyone - shapley.coalition_metric[frozenset()], abs=1e-6)
    predictor, _ = tiny
    kinds = {s.name: s.kind for s in predictor.schema.inputs}
    found = attribute(cross, kinds, predictor.preprocessor.processors, samples=4, steps=8)
    assert "skipped" not in found["text"].summary and found["text"].summary["top_tokens"]
    curves = robustness(cross, levels=(0.0, 1.0))
    assert curves["text"]["noise_on"] == "embedding"
    assert curves["text"]["drop"][-1][1] == pytest.approx(shapley.coalition_metric[frozenset({"tabular"})])
    assert attention_weights(cross) is not None  # cross_attention offers modality_weights()


def _compare_dir(folder: Path) -> Path:
    """summary.csv without compare.json: the metric is read from the <metric>_mean column."""
    folder.mkdir()
    rows = [
        {"modalities": "tabular", "fusion": "concat", "val_score_mean": 0.5, "accuracy_mean": 0.7},
        {"modalities": "text", "fusion": "concat", "val_score_mean": 0.5, "accuracy_mean": 0.75},
        {"modalities": "tabular+text", "fusion": "concat", "val_score_mean": 0.5, "accuracy_mean": 0.9},
    ]
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    return folder


def test_api_writes_the_explain_directory(tiny, tmp_path):
    predictor, rows = tiny
    out = tmp_path / "explain"
    result = polyfuse.explain(predictor, rows, out=out, compare_dir=_compare_dir(tmp_path / "cmp"), steps=8)
    explain = json.loads((out / "explain.json").read_text())
    assert EXPLAIN_KEYS <= set(explain) and explain["format"] == 1  # docs/format.md
    assert explain["metric"] == "accuracy" and explain["rows"] == len(rows)
    assert explain["confusion"]["classes"] == ["a", "b", "c"]
    assert np.asarray(explain["confusion"]["matrix"]).sum() == len(rows)
    assert len(explain["correlation"]["cka"]) == 2 and explain["correlation"]["cka"][0][0] == pytest.approx(
        1.0
    )
    shapley = json.loads((out / "shapley.json").read_text())
    assert {"values", "metric", "metric_all", "metric_none"} <= set(shapley)
    assert set(shapley["values"]) == {"tabular", "text"}
    assert sum(shapley["values"].values()) == pytest.approx(
        shapley["metric_all"] - shapley["metric_none"], abs=1e-6
    )
    assert sum(shapley["subsets"].values()) == pytest.approx(
        0.9 - shapley["subsets_empty"]["metric"], abs=1e-9
    )
    assert result["shapley"] == shapley
    per_sample = pd.read_csv(out / "shapley_per_sample.csv")
    assert list(per_sample.columns) == ["row_id", *predictor.schema.modalities]
    assert len(per_sample) == len(rows)
    figures = explain["figures"]
    assert {"shapley", "robustness", "correlation", "confusion", "importance_tabular", "ig_text"} <= set(
        figures
    )
    for name in figures.values():
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 2000
    assert sorted(p.name for p in out.glob("*.png")) == sorted(figures.values())


def test_regression_explain_uses_r2(tmp_path):
    frame = synthetic_frame(200, seed=2, task="regression")
    predictor = polyfuse.fit(
        frame, label="price", max_epochs=3, baselines=False, modality_dropout=0.3, **FAST
    )
    result = polyfuse.explain(predictor, frame.iloc[-60:], steps=8)
    shapley = result["shapley"]
    assert result["metric"] == shapley["metric"] == "r2"
    assert result["confusion"] is None and "std" in result["fix_break_rule"]
    assert sum(shapley["values"].values()) == pytest.approx(
        shapley["metric_all"] - shapley["metric_none"], abs=1e-6
    )
    assert shapley["values"]["tabular"] > shapley["values"]["text"]  # price is a function of the numbers


def test_missing_extras_give_a_clear_error(tiny, monkeypatch, tmp_path):
    predictor, rows = tiny
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(PolyfuseError, match=r"polyfuse\[explain\]"):
        polyfuse.explain(predictor, rows)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PolyfuseError, match=r"polyfuse\[explain\]"):
        polyfuse.explain(predictor, rows, out=tmp_path / "x")


@pytest.mark.slow
def test_cli_explains_the_digits_model_on_its_own_test_split(digits_model, tmp_path):
    from polyfuse.cli import app

    predictor, folder = digits_model
    out = tmp_path / "explain"
    done = CliRunner().invoke(
        app, ["explain", str(folder), "--out", str(out), "--samples", "4", "--steps", "8"]
    )
    assert done.exit_code == 0, done.output
    shapley = json.loads((out / "shapley.json").read_text())
    assert set(shapley) == {"values", "metric", "metric_all", "metric_none", "coalitions"}
    assert set(shapley["values"]) == set(predictor.schema.modalities) == {"image", "audio", "text"}
    assert all(isinstance(v, float) for v in shapley["values"].values())
    assert sum(shapley["values"].values()) == pytest.approx(
        shapley["metric_all"] - shapley["metric_none"], abs=1e-6
    )
    assert len(shapley["coalitions"]) == 8 and shapley["metric"] == "accuracy"
    # The same rows as fit's test split: v(all) is the model's recorded test accuracy.
    assert shapley["metric_all"] == pytest.approx(predictor.metrics["test"]["accuracy"], abs=1e-9)
    explain = json.loads((out / "explain.json").read_text())
    assert explain["rows"] == predictor.metrics["rows"]["test"]
    assert {"ig_image", "ig_audio", "ig_text"} <= set(explain["figures"])
    assert explain["features"]["audio"]["input"] == "logmel" and explain["features"]["image"]["samples"] == 4


@pytest.mark.slow
def test_frozen_pretrained_adapters_are_attributed_through_their_fixed_weights(
    media_table, tiny_models, tmp_path
):
    predictor = polyfuse.fit(
        media_table,
        label="label",
        on_error="skip",
        verbose=False,
        baselines=False,
        max_epochs=1,
        encoders={"img": "hf_image", "clip": "hf_audio", "text": "text_bag"},
        encoder_params={
            "img": {"pretrained": tiny_models["image"]},
            "clip": {"pretrained": tiny_models["audio"]},
        },
        freeze={"img": True, "clip": True},
        processor_options={"clip": {"duration": 0.2}},
    )
    result = polyfuse.explain(
        predictor, media_table, out=tmp_path / "explain", on_error="skip", samples=3, steps=8
    )
    image, audio = result["features"]["img"], result["features"]["clip"]
    assert image["frozen_encoder"] and audio["frozen_encoder"]
    assert image["mean_abs"] > 0  # gradients reached the pixels through the frozen ViT
    assert audio["input"] == "waveform" and max(audio["profile"]) > 0
    assert {"ig_img", "ig_clip", "ig_text"} <= set(result["figures"])
    assert result["rows"] == MEDIA_ROWS - 1  # the truncated image's row is skipped
    without_clip = [p for p in result["presence"] if "clip" not in p["present"]]
    assert [p["rows"] for p in without_clip] == [1]  # the missing clip's row is kept, clip absent
