"""Pre-training without labels: contrastive and masked-modality objectives, retrieval metrics, and a
planted pairing that a short run learns exactly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import polyfuse
from polyfuse.config import parse_pairs
from polyfuse.data.errors import SchemaError
from polyfuse.eval.retrieval import relevance, retrieval_scores
from polyfuse.losses.contrastive import info_nce, masked_reconstruction, pair_losses
from polyfuse.pretrained import load_pretrained
from polyfuse.pretraining import resolve_pairs


def _unit(rows: int, dim: int = 4, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_is_the_mean_of_both_directions_cross_entropy():
    a, b, scale = _unit(5), _unit(5, seed=1), torch.tensor(3.0)
    logits = (scale * a @ b.T).numpy().astype(np.float64)

    def ce(x: np.ndarray) -> float:  # -log softmax of the diagonal, averaged
        x = x - x.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(x).sum(axis=1)) - np.diag(x)))

    assert info_nce(a, b, scale).item() == pytest.approx((ce(logits) + ce(logits.T)) / 2, rel=1e-5)
    assert info_nce(a, a, torch.tensor(100.0)).item() < 1e-3  # each row's partner is itself


def test_pair_losses_read_only_rows_holding_both_modalities():
    z = {"x": _unit(6), "y": _unit(6, seed=1), "w": _unit(6, seed=2)}
    present = {
        "x": torch.tensor([1, 1, 0, 1, 1, 1]).bool(),
        "y": torch.tensor([1, 0, 1, 1, 1, 1]).bool(),
        "w": torch.tensor([1, 0, 0, 0, 0, 0]).bool(),
    }
    scale = torch.tensor(5.0)
    losses = pair_losses(z, present, [("x", "y"), ("x", "w")], scale)
    both = torch.tensor([0, 3, 4, 5])
    assert list(losses) == [("x", "y")]  # x and w share one row: nothing to contrast
    assert losses[("x", "y")].item() == pytest.approx(info_nce(z["x"][both], z["y"][both], scale).item())


def test_masked_reconstruction_trains_the_prediction_not_its_target():
    z = {"x": _unit(4).requires_grad_(), "y": _unit(4, seed=1).requires_grad_()}
    present = {m: torch.ones(4, dtype=torch.bool) for m in z}
    predictors = torch.nn.ModuleDict({"x": torch.nn.Linear(4, 4)})  # predicts x from y only
    loss = masked_reconstruction(z, present, predictors)
    loss.backward()
    assert 0 < loss.item() <= 2
    assert z["x"].grad is None  # the target is held fixed (stop-gradient)
    assert z["y"].grad is not None and z["y"].grad.abs().sum() > 0
    same = {"x": z["x"].detach(), "y": z["x"].detach()}
    with torch.no_grad():  # a perfect predictor (identity): zero loss
        predictors["x"].weight.copy_(torch.eye(4))
        predictors["x"].bias.zero_()
    assert masked_reconstruction(same, present, predictors).item() == pytest.approx(0.0, abs=1e-6)


def test_relevance_by_row_or_by_group():
    assert torch.equal(relevance(None, None, 3), torch.eye(3, dtype=torch.bool))
    got = relevance(["a", "b", "a"], ["a", "b", "a"], 3)
    assert got.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_retrieval_scores_from_known_ranks():
    # Query i's partner (gallery row i) is ranked i + 1: rank 1, 2, 3.
    gallery = torch.eye(3)
    queries = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.5, 0.0], [0.9, 0.5, 0.3]])
    scores = retrieval_scores(queries, gallery, relevance(None, None, 3), ks=(1, 2, 5))
    assert scores["recall_at_1"] == pytest.approx(1 / 3, abs=1e-5)
    assert scores["recall_at_2"] == pytest.approx(2 / 3, abs=1e-5)
    assert scores["recall_at_5"] == pytest.approx(1.0)
    assert scores["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=1e-5)


def test_resolve_pairs():
    modalities = ["image", "caption", "audio"]
    assert resolve_pairs(modalities, None, None) == [
        ("image", "caption"),
        ("image", "audio"),
        ("caption", "audio"),
    ]
    assert resolve_pairs(modalities, None, "caption") == [("caption", "image"), ("caption", "audio")]
    assert resolve_pairs(modalities, [("audio", "image")], None) == [("audio", "image")]
    with pytest.raises(SchemaError, match="cannot align"):
        resolve_pairs(modalities, [("audio", "photo")], None)
    with pytest.raises(SchemaError, match="anchor"):
        resolve_pairs(modalities, None, "photo")


def _planted(rows: int = 300, things: int = 12, seed: int = 0) -> pd.DataFrame:
    """A note naming one of ``things`` and two numbers placing it on a grid: the pairing to learn."""
    rng = np.random.default_rng(seed)
    thing = rng.integers(0, things, rows)
    return pd.DataFrame(
        {
            "note": [f"item w{t} here" for t in thing],
            "x1": thing % 4 + rng.normal(0, 0.1, rows),
            "x2": thing // 4 + rng.normal(0, 0.1, rows),
            "thing": thing,
        }
    )


OPTIONS = {
    "roles": {"note": "text", "thing": "ignore"},
    "encoders": {"note": "text_bag"},
    "relevant_by": "thing",
    "max_epochs": 40,
    "patience": 10,
}


def test_pretrain_learns_a_planted_pairing_exactly():
    done = polyfuse.pretrain(_planted(), **OPTIONS)
    assert done.pairs == [("note", "tabular")]
    assert done.summary["val_recall_at_1"] == 1.0
    for direction in ("note->tabular", "tabular->note"):
        assert done.test[direction]["recall_at_1"] == 1.0 and done.test[direction]["mrr"] == 1.0
    again = polyfuse.pretrain(_planted(), **OPTIONS)
    assert again.test == done.test and again.summary["best_epoch"] == done.summary["best_epoch"]


def test_masked_reconstruction_trains_beside_the_contrastive_loss():
    from polyfuse.models.inference import aligned_table

    done = polyfuse.pretrain(_planted(), masked_weight=1.0, **{**OPTIONS, "max_epochs": 30})
    assert set(done.model.predictors) == {"note", "tabular"}
    assert done.test["note->tabular"]["recall_at_1"] == 1.0
    z, present = aligned_table(done.model, done.tables["test"])
    guess = F.normalize(done.model.predictors["tabular"](z["note"]), dim=-1)
    fit = (guess * z["tabular"]).sum(-1).mean().item()  # the predictor learnt the other modality
    assert fit > 0.8 and present["note"].all()
    assert math.isfinite(done.summary["seconds"])


def test_pretrain_refuses_a_table_of_one_modality():
    frame = _planted()[["x1", "x2"]]
    with pytest.raises(SchemaError, match="only"):
        polyfuse.pretrain(frame, max_epochs=1)


def test_parse_pairs():
    assert parse_pairs("image:caption, audio:caption") == [("image", "caption"), ("audio", "caption")]
    assert parse_pairs([("a", "b")]) == [("a", "b")] and parse_pairs(None) is None
    with pytest.raises(ValueError, match="MODALITY:MODALITY"):
        parse_pairs("image-caption")


def test_a_saved_pretrained_model_embeds_as_before(tmp_path):
    from polyfuse.models.inference import aligned_table

    done = polyfuse.pretrain(_planted(), out=tmp_path / "pre", **{**OPTIONS, "max_epochs": 3})
    back = load_pretrained(tmp_path / "pre")
    assert back.pairs == done.pairs and back.options == done.options and back.test == done.test
    assert back.encoders == done.encoders and back.summary["epochs"] == done.summary["epochs"]
    table = done.tables["test"]
    before, _ = aligned_table(done.model, table)
    after, _ = aligned_table(back.model, table)
    assert all(torch.allclose(before[m], after[m], atol=1e-6) for m in before)
    with pytest.raises(polyfuse.PolyfuseError, match="pre-trained"):
        polyfuse.load(tmp_path / "pre")


def test_cli_pretrain_prints_retrieval_and_saves(tmp_path):
    from typer.testing import CliRunner

    from polyfuse.cli import app

    _planted().to_csv(tmp_path / "t.csv", index=False)
    args = ["pretrain", str(tmp_path / "t.csv"), "--out", str(tmp_path / "pre"), "--text", "note"]
    args += [
        "--ignore",
        "thing",
        "--encoder",
        "note=text_bag",
        "--relevant-by",
        "thing",
        "--max-epochs",
        "30",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "aligned note:tabular" in result.output and "test note->tabular: recall_at_1 1.0000" in result.output
    )
    assert load_pretrained(tmp_path / "pre").test["tabular->note"]["recall_at_1"] == 1.0


def test_pretrain_names_a_pair_no_training_row_holds():
    frame = _planted().assign(note="")  # every note empty: the text modality is absent everywhere
    with pytest.raises(SchemaError, match="0 training rows hold both 'note' and 'tabular'"):
        polyfuse.pretrain(frame, **{**OPTIONS, "max_epochs": 1})


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pretrained") / "pre"
    polyfuse.pretrain(_planted(), out=out, **{**OPTIONS, "max_epochs": 5})
    return out


def test_fit_starts_from_the_pretrained_encoders_and_processors(pretrained_dir):
    source = load_pretrained(pretrained_dir)
    # lr 0: nothing moves, so the fitted model's encoders are exactly the ones it started from
    fitted = polyfuse.fit(
        _planted(seed=1),
        "thing",
        roles={"note": "text"},
        init_from=pretrained_dir,
        lr=0.0,
        max_epochs=1,
        baselines=False,
        verbose=False,
    )
    assert fitted.metrics["init_from"]["modalities"] == ["note", "tabular"]
    for m in ("note", "tabular"):
        mine, theirs = fitted.model.encoders[m].state_dict(), source.model.encoders[m].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), m
        assert fitted.preprocessor.processors[m].state() == source.pre.processors[m].state()
    assert fitted.model_config.encoders["note"].name == "text_bag"  # the pre-trained encoder, not the default


def test_init_from_refuses_another_encoder_for_a_pretrained_modality(pretrained_dir):
    with pytest.raises(SchemaError, match="pre-trained with encoder 'text_bag', not 'text_transformer'"):
        polyfuse.fit(
            _planted(), "thing", roles={"note": "text"}, encoders={"note": "text_transformer"},
            init_from=pretrained_dir, max_epochs=1, verbose=False,
        )  # fmt: skip


def test_init_from_needs_a_shared_modality(pretrained_dir):
    frame = _planted().assign(words=lambda f: f["note"]).drop(columns=["note", "x1", "x2"])
    with pytest.raises(SchemaError, match="none of this table's"):
        polyfuse.fit(frame, "thing", roles={"words": "text"}, init_from=pretrained_dir, verbose=False)


def test_cli_fit_passes_init_from(monkeypatch, tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from polyfuse.cli import app

    calls = []
    monkeypatch.setattr(polyfuse, "fit", lambda *a, **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["fit", str(tmp_path / "t.csv"), "-l", "y", "--init-from", "runs/pre"])
    assert result.exit_code == 0, result.output
    assert calls[0]["init_from"] == Path("runs/pre")


def test_test_queries_and_their_nearest_rows_are_kept_and_reported(pretrained_dir, tmp_path):
    frame = _planted()
    examples = load_pretrained(pretrained_dir).examples
    assert set(examples) == {"note->tabular", "tabular->note"}
    for direction, queries in examples.items():
        assert len(queries) == 4
        for q in queries:
            scores = [h["score"] for h in q["hits"]]
            assert len(scores) == 3 and scores == sorted(scores, reverse=True)
            for hit in q["hits"]:  # a match is a row of the same thing
                assert hit["match"] == (
                    frame.at[int(hit["row"]), "thing"] == frame.at[int(q["row"]), "thing"]
                )
            note = q["query"] if direction == "note->tabular" else q["hits"][0]["value"]
            assert note.startswith("item w") and "x1=" in (
                q["hits"][0]["value"] if direction == "note->tabular" else q["query"]
            )
    page = polyfuse.report(pretrained_dir, tmp_path / "report.html").read_text()
    assert "pre-trained model" in page and "Recall@10" in page and "Nearest rows" in page
    assert examples["note->tabular"][0]["query"] in page
