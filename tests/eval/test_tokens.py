"""Token sequences from encoders into a token-level fusion (cross_attention): masking of padding and
absent modalities, the model's wiring, frozen-encoder token caches, save / load."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import Tensor

import polyfuse
import polyfuse.fusions  # noqa: F401  (registers the fusions)
import polyfuse.heads  # noqa: F401
from conftest import FAST, MEDIA_OPTIONS, synthetic_frame
from polyfuse.data.batch import EncodedTable
from polyfuse.encoders import build_encoder
from polyfuse.models.build import fusion_input_dim
from polyfuse.models.multimodal import MultimodalModel, pack_tokens, pad_tokens, unpack_tokens
from polyfuse.registry import FUSIONS, HEADS
from polyfuse.train import loop
from polyfuse.train.loop import cache_frozen_outputs

B = 5
TOKEN_DIMS = {"text": 6, "image": 4, "audio": 3}
LENGTHS = {"text": 7, "image": 9, "audio": 2}


def _tokens(seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Token sequences, presence masks and token validity; text rows are padded to different lengths."""
    gen = torch.Generator().manual_seed(seed)
    tokens = {m: torch.randn(B, LENGTHS[m], d, generator=gen) for m, d in TOKEN_DIMS.items()}
    mask = {m: torch.ones(B, dtype=torch.bool) for m in TOKEN_DIMS}
    mask["audio"][2] = False
    valid = {m: torch.ones(B, LENGTHS[m], dtype=torch.bool) for m in TOKEN_DIMS}
    valid["text"] = torch.arange(LENGTHS["text"]) < torch.tensor([6, 3, 1, 5, 0]).unsqueeze(1)  # row 4 empty
    return tokens, mask, valid


TOKEN_FUSIONS = [n for n in FUSIONS.names() if getattr(FUSIONS.get(n), "wants_tokens", False)]
SMALL = {"cross_attention": {"hidden_dim": 16, "num_heads": 2}, "relation": {"hidden_dim": 16}}


def _fusion(name: str = "cross_attention") -> torch.nn.Module:
    torch.manual_seed(0)
    return FUSIONS.build(name, in_dims=TOKEN_DIMS, **SMALL[name]).eval()


def test_token_level_fusions_declare_it() -> None:
    assert TOKEN_FUSIONS == ["cross_attention", "relation"]
    assert set(SMALL) == set(TOKEN_FUSIONS)


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_token_fusions_take_token_sequences(name: str) -> None:
    fusion = _fusion(name)
    tokens, mask, valid = _tokens()
    with torch.no_grad():
        out = fusion(tokens, mask, tokens_valid=valid)
    assert out.shape == (B, fusion.output_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_padded_tokens_have_no_influence(name: str) -> None:
    fusion = _fusion(name)
    tokens, mask, valid = _tokens()
    changed = {m: t.clone() for m, t in tokens.items()}
    changed["text"][~valid["text"]] = float("nan")  # padding may hold anything, even NaN
    with torch.no_grad():
        expected = fusion(tokens, mask, tokens_valid=valid)
        torch.testing.assert_close(fusion(changed, mask, tokens_valid=valid), expected)
        # Trimming the padding columns away gives the same result too.
        trimmed = {**tokens, "text": tokens["text"][:, :6]}
        trimmed_valid = {**valid, "text": valid["text"][:, :6]}
        torch.testing.assert_close(fusion(trimmed, mask, tokens_valid=trimmed_valid), expected)
        # Without the validity the padding counts: a different result (the test has teeth).
        assert not torch.allclose(fusion(tokens, mask), expected)


def test_cross_attention_weighs_only_used_tokens() -> None:
    fusion = _fusion()
    tokens, mask, valid = _tokens()
    with torch.no_grad():
        fusion(tokens, mask, tokens_valid=valid)
    weights = fusion.modality_weights()
    assert weights["text"][4] == 0 and weights["audio"][2] == 0  # no valid text token / audio absent


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_absent_modality_tokens_have_no_influence_and_gradients_stay_finite(name: str) -> None:
    fusion = _fusion(name).train()
    tokens, mask, valid = _tokens()
    tokens["audio"][2] = float("nan")  # audio is absent in row 2
    tokens = {m: t.requires_grad_() for m, t in tokens.items()}
    out = fusion(tokens, mask, tokens_valid=valid)
    out.pow(2).mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)
    fusion.eval()
    with torch.no_grad():
        other = {m: t.detach().clone() for m, t in tokens.items()}
        other["audio"][2] = torch.randn(LENGTHS["audio"], TOKEN_DIMS["audio"]) * 100
        torch.testing.assert_close(
            fusion(other, mask, tokens_valid=valid)[2], fusion(tokens, mask, tokens_valid=valid)[2]
        )


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_an_embedding_is_a_sequence_of_one_token(name: str) -> None:
    fusion = _fusion(name)
    tokens, mask, _ = _tokens()
    embeddings = {m: t[:, 0] for m, t in tokens.items()}  # [B, D]
    ones = {m: torch.ones(B, 1, dtype=torch.bool) for m in tokens}
    with torch.no_grad():
        torch.testing.assert_close(
            fusion(embeddings, mask),
            fusion({m: t[:, :1] for m, t in tokens.items()}, mask, tokens_valid=ones),
        )


def test_pack_and_pad_tokens() -> None:
    a = (torch.randn(2, 3, 4), torch.tensor([[True, True, False], [True, False, False]]))
    b = (torch.randn(1, 5, 4), torch.ones(1, 5, dtype=torch.bool))
    tokens, valid = pad_tokens([a, b])
    assert tokens.shape == (3, 5, 4) and valid.shape == (3, 5)
    assert torch.equal(valid[:2, :3], a[1]) and not valid[:2, 3:].any() and valid[2].all()
    assert torch.equal(tokens[:2, :3], a[0]) and tokens[:2, 3:].abs().sum() == 0
    packed = pack_tokens(tokens, valid)
    assert packed.shape == (3, 5, 5)
    back_tokens, back_valid = unpack_tokens(packed)
    assert torch.equal(back_tokens, tokens) and torch.equal(back_valid, valid)


# --- the model: token_dim wiring, forward_tokens, frozen-encoder token caches ------------------------


def _model(fusion: str = "cross_attention") -> MultimodalModel:
    """A frozen text transformer "t" (padding trimmed per batch) and a trainable tabular MLP "x"."""
    torch.manual_seed(0)
    encoders = {
        "t": build_encoder("text_transformer", vocab_size=30, max_length=12, hidden_dim=8, output_dim=8),
        "x": build_encoder("tabular_mlp", num_numeric=2, cardinalities=[3]),
    }
    encoders["t"].requires_grad_(False)
    wants = getattr(FUSIONS.get(fusion), "wants_tokens", False)
    in_dims = {m: fusion_input_dim(e, wants) for m, e in encoders.items()}
    fused = FUSIONS.build(fusion, in_dims=in_dims, output_dim=16)
    return MultimodalModel(encoders, fused, {"y": HEADS.build("multiclass", in_dim=16, num_outputs=3)}).eval()


def _table(n: int, seed: int) -> EncodedTable:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 30, (n, 12), generator=g)
    lengths = torch.randint(0, 12, (n,), generator=g)
    ids[torch.arange(12) >= lengths.unsqueeze(1)] = 0  # right padding, some rows all padding
    inputs = {
        "t": ids,
        "x": {
            "numeric": torch.randn(n, 2, generator=g),
            "categorical": torch.randint(0, 3, (n, 1), generator=g),
        },
    }
    mask = {"t": lengths > 0, "x": torch.ones(n, dtype=torch.bool)}
    return EncodedTable(inputs, mask, {"y": torch.randint(0, 3, (n,), generator=g)}, row_ids=list(range(n)))


def test_model_feeds_forward_tokens_to_a_token_fusion(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    assert model.wants_tokens and not _model("concat").wants_tokens
    batch = _table(6, 0).take(list(range(6)))
    tokens, valid = model.fusion_inputs(batch)
    assert valid is not None
    assert tokens["t"].shape[:2] == valid["t"].shape and tokens["t"].shape[2] == 8
    assert tokens["x"].shape == (6, 3, model.encoders["x"].token_dim) and valid["x"].all()
    assert torch.equal(valid["t"], (batch.inputs["t"] != 0)[:, : valid["t"].shape[1]])
    calls = []
    monkeypatch.setattr(
        model.fusion, "forward", lambda e, m, tokens_valid=None: calls.append(tokens_valid) or 0
    )
    model.fuse(batch)
    assert calls and set(calls[0]) == {"t", "x"}


def test_frozen_encoder_tokens_are_cached_and_give_the_same_predictions() -> None:
    model = _model()
    train, val = _table(300, 0), _table(40, 1)
    val.cached["t"] = torch.zeros(40, 8)  # an embedding cache left by a model with another fusion
    cache_frozen_outputs(model, [train, val], batch_size=64)
    assert set(train.cached) == {"t"} and train.cached["t"].dim() == 3 and val.cached["t"].dim() == 3
    tokens, valid = unpack_tokens(train.cached["t"])
    assert tokens.shape[-1] == 8 and torch.equal(valid.sum(1), (train.inputs["t"] != 0).sum(1))
    rows = [0, 5, 299, 64, 128, 200]
    fresh = _table(300, 0)
    torch.testing.assert_close(model.predict(train.take(rows))["y"], model.predict(fresh.take(rows))["y"])
    # A concat model on the same table ignores the token cache and computes its embeddings.
    concat = _model("concat")
    torch.testing.assert_close(concat.predict(train.take(rows))["y"], concat.predict(fresh.take(rows))["y"])


def test_token_cache_too_big_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "TOKEN_CACHE_LIMIT", 100)
    table = _table(50, 0)
    cache_frozen_outputs(_model(), [table], batch_size=16)
    assert table.cached == {}


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_token_fusion_fit_save_load_round_trip(tmp_path: Path, name: str) -> None:
    frame = synthetic_frame(120, seed=2)
    predictor = polyfuse.fit(frame, label="kind", fusion=name, max_epochs=2, baselines=False, **FAST)
    assert predictor.model.wants_tokens
    out = predictor.save(tmp_path / "model")
    loaded = polyfuse.load(out)
    rows = frame.drop(columns=["kind"]).head(30)
    pd.testing.assert_frame_equal(loaded.predict_proba(rows), predictor.predict_proba(rows), check_exact=True)
    again = loaded.save(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_a_cache_never_stands_in_for_an_encoder_that_trains() -> None:
    model = _model()
    table = _table(20, 0)
    cache_frozen_outputs(model, [table])
    rows = list(range(20))
    model.encoders["t"].requires_grad_(True)  # the same table, now with a trainable text encoder
    stale = table.take(rows)
    tokens, valid = unpack_tokens(stale.cached["t"])
    stale.cached["t"] = pack_tokens(torch.randn_like(tokens) * 10, torch.ones_like(valid))
    fresh = _table(20, 0).take(rows)
    torch.testing.assert_close(model.predict(stale)["y"], model.predict(fresh)["y"])


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> str:
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("vit") / "vit"
    config = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=64, num_channels=3)  # fmt: skip
    torch.manual_seed(0)
    transformers.ViTModel(config).save_pretrained(path)
    return str(path)


def test_frozen_hf_backbone_tokens_are_cached_for_cross_attention(media_table: Path, tiny_vit: str) -> None:
    # The adapter's projection still trains, but the fusion reads the backbone's tokens before it,
    # so for cross_attention those tokens never change: they are computed once.
    predictor = polyfuse.fit(
        media_table,
        label="label",
        fusion="cross_attention",
        on_error="skip",
        verbose=False,
        baselines=False,
        max_epochs=1,
        encoders={"img": "hf_image", "clip": "audio_cnn", "text": "text_bag"},
        encoder_params={"img": {"pretrained": tiny_vit}},
        freeze={"img": True},
        processor_options=MEDIA_OPTIONS,
    )
    model = predictor.model
    assert model.frozen_modalities() == [] and model.cacheable_modalities() == ["img"]
    assert model.fusion.proj["img"][0].in_features == 32  # the ViT's hidden size, not output_dim
    table, _ = predictor.encode(media_table, on_error="skip")
    fresh = table.take(list(range(len(table))))
    cache_frozen_outputs(model, [table])
    tokens, valid = unpack_tokens(table.cached["img"])
    assert tokens.shape == (len(table), 1 + 2 * 2, 32) and valid.all()  # [CLS] + 2 x 2 patches
    cached = table.take(list(range(len(table))))
    torch.testing.assert_close(model.predict(cached)["label"], model.predict(fresh)["label"])


def test_unmask_empty_rows_marks_only_the_first_position_of_empty_rows() -> None:
    """Branch-free (ONNX export traces it): rows with a valid token are unchanged."""
    from polyfuse.encoders._hf import unmask_empty_rows

    valid = torch.tensor([[False, False, False], [False, True, True], [True, False, False]])
    expected = torch.tensor([[True, False, False], [False, True, True], [True, False, False]])
    assert torch.equal(unmask_empty_rows(valid), expected)
    assert torch.equal(unmask_empty_rows(valid[1:]), valid[1:])


def test_trim_padding_keeps_every_position_in_an_exported_graph() -> None:
    """Trimming is data dependent: a traced graph would bake the example's length in as a constant
    and cut longer texts (the demo model's ONNX export differed from torch by 1.5)."""
    from polyfuse.encoders.text import trim_padding

    short = torch.tensor([[5, 0, 0, 0], [6, 7, 0, 0]])
    longer = torch.tensor([[5, 6, 7, 8], [6, 0, 0, 0]])
    assert trim_padding(short, 0).shape == (2, 2)  # eager: trimmed
    traced = torch.jit.trace(lambda x: trim_padding(x, 0).sum(dim=1), short)
    assert torch.equal(traced(longer), longer.sum(dim=1))
