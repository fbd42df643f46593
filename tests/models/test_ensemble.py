"""An ensemble as one MultimodalModel: it averages its members' predictions by weight, a member counts
only where one of its modalities is present, shared frozen encoders are kept once, and it saves,
loads and exports like any other model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import synthetic_frame

from polyfuse.config import EncoderConfig, FusionConfig, MemberConfig, ModelConfig, from_dict, to_dict
from polyfuse.fitting import FitRequest, prepare
from polyfuse.models.build import build_model
from polyfuse.models.ensemble import assemble, ensemble_config
from polyfuse.models.inference import predict_table

TASK_LABELS = {"multiclass": "kind", "binary": "ok", "regression": "price"}


def _members(task: str, weights: tuple[float, float, float] = (0.5, 0.3, 0.2)):
    """Untrained fused, text-only and tabular-only models of one table, and their member configs."""
    prep = prepare(
        synthetic_frame(60, task=task),
        Path.cwd(),
        FitRequest([TASK_LABELS[task]], encoders={"text": "text_bag"}),
    )
    configs = {
        "fused": ModelConfig(prep.encoders, FusionConfig("concat"), prep.heads),
        **{m: ModelConfig({m: prep.encoders[m]}, FusionConfig("concat"), prep.heads) for m in prep.encoders},
    }
    torch.manual_seed(0)
    models = {name: build_model(c, prep.pre).eval() for name, c in configs.items()}
    members = [MemberConfig(name, configs[name], w) for name, w in zip(configs, weights, strict=True)]
    return prep, members, [models[m.name] for m in members]


@pytest.mark.parametrize("task", list(TASK_LABELS))
def test_the_ensemble_predicts_the_weighted_mean_of_its_members(task):
    prep, members, models = _members(task)
    ensemble = assemble(members, models, prep.heads).eval()
    table, label = prep.tables["test"], TASK_LABELS[task]
    expected = sum(
        m.weight * predict_table(model, table)[label] for m, model in zip(members, models, strict=True)
    )
    torch.testing.assert_close(predict_table(ensemble, table)[label], expected, atol=1e-5, rtol=1e-4)


def test_a_member_whose_modalities_are_all_absent_does_not_count():
    prep, members, models = _members("multiclass")
    ensemble = assemble(members, models, prep.heads).eval()
    batch = prep.tables["test"].take(list(range(8)))
    batch.mask["text"] = torch.zeros_like(batch.mask["text"])  # the text-only member cannot vote
    fused, _, tabular = (model.predict(batch)["kind"] for model in models)
    expected = (0.5 * fused + 0.2 * tabular) / 0.7
    torch.testing.assert_close(ensemble.predict(batch)["kind"], expected, atol=1e-5, rtol=1e-4)


def test_frozen_encoders_with_one_config_are_kept_and_run_once():
    prep, members, models = _members("multiclass")
    for member, model in zip(members, models, strict=True):  # freeze the text encoders by config
        if "text" in member.model.encoders:
            member.model.encoders["text"] = EncoderConfig("text_bag", {}, freeze=True)
            model.encoders["text"].requires_grad_(False)
    models[1].encoders["text"].load_state_dict(models[0].encoders["text"].state_dict())
    ensemble = assemble(members, models, prep.heads)
    assert len(ensemble.encoders["text"].units) == 1 and len(ensemble.encoders["tabular"].units) == 2
    assert ensemble.is_cacheable("text") and not ensemble.is_cacheable("tabular")
    table = prep.tables["test"]
    expected = sum(
        m.weight * predict_table(model, table)["kind"] for m, model in zip(members, models, strict=True)
    )
    torch.testing.assert_close(predict_table(ensemble, table)["kind"], expected, atol=1e-5, rtol=1e-4)


def test_the_saved_config_rebuilds_the_same_model():
    prep, members, models = _members("multiclass")
    ensemble = assemble(members, models, prep.heads).eval()
    config = ensemble_config(members, prep.heads)
    assert config.fusion.name == "ensemble" and list(config.encoders) == ["text", "tabular"]
    again = from_dict(ModelConfig, json.loads(json.dumps(to_dict(config))))  # as config.json holds it
    assert [(m.name, m.weight) for m in again.members] == [("fused", 0.5), ("text", 0.3), ("tabular", 0.2)]
    rebuilt = build_model(again, prep.pre).eval()
    rebuilt.load_state_dict(ensemble.state_dict())  # strict: the same parameters, named the same
    table = prep.tables["test"]
    torch.testing.assert_close(predict_table(rebuilt, table)["kind"], predict_table(ensemble, table)["kind"])


def test_token_attributions_run_through_every_members_text_encoder():
    from polyfuse.config import TrainConfig
    from polyfuse.predictor import Predictor

    prep, members, models = _members("multiclass")
    ensemble = assemble(members, models, prep.heads)
    assert len(ensemble.encoders["text"].units) == 2  # the fused model's and the text model's
    predictor = Predictor(prep.pre, ensemble_config(members, prep.heads), TrainConfig(), ensemble)
    found = predictor.explain(synthetic_frame(40, seed=5), samples=4, steps=16)["features"]["text"]
    assert "skipped" not in found, found
    assert found["top_tokens"] and found["convergence_delta"] < 0.05, found
