"""Training-time augmentations: every registered one keeps its inputs' shapes and dtypes, repeats
with its generator and changes the batch; what each does; the ``augment`` option's plan; training
only."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import polyfuse
import polyfuse.data.augmentations  # noqa: F401  (registers them)
from conftest import FAST
from polyfuse.data.vocabulary import PAD_ID, UNK_ID
from polyfuse.errors import PolyfuseError
from polyfuse.registry import AUGMENTATIONS, MODALITIES
from polyfuse.train.augment import augment_plan

B = 8


def _inputs(kind: str, variant: str = "") -> Any:
    gen = torch.Generator().manual_seed(1)
    if kind == "image":
        pixels = torch.rand(B, 3, 16, 16, generator=gen)
        return (pixels * 255).to(torch.uint8) if variant == "uint8" else pixels
    if kind == "audio":
        return (
            torch.randn(B, 800, generator=gen)
            if variant == "waveform"
            else torch.randn(B, 20, 50, generator=gen)
        )
    if kind == "text":
        ids = torch.randint(2, 50, (B, 12), generator=gen)
        ids[:, 8:] = PAD_ID
        ids[0, 1:] = PAD_ID  # a one-word row
        return ids
    if kind == "tabular":
        missing = (torch.rand(B, 4, generator=gen) < 0.2).float()
        return {
            "numeric": torch.randn(B, 4, generator=gen) * (1 - missing),
            "numeric_missing": missing,
            "categorical": torch.randint(1, 5, (B, 3), generator=gen),
        }
    valid = torch.ones(B, 40, dtype=torch.bool)
    valid[0, 30:] = False
    return {"values": torch.randn(B, 2, 40, generator=gen) * valid[:, None], "valid": valid}


CASES = [
    (name, kind, variant)
    for name in AUGMENTATIONS.names()
    for kind in AUGMENTATIONS.get(name).kinds
    for variant in {"image": ["", "uint8"], "audio": ["", "waveform"]}.get(kind, [""])
    if not (name == "pitch" and variant == "waveform")  # pitch leaves a waveform alone (its docstring)
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def _layout(a: Any) -> Any:
    return {k: _layout(v) for k, v in a.items()} if isinstance(a, dict) else (tuple(a.shape), a.dtype)


@pytest.mark.parametrize(("name", "kind", "variant"), CASES)
def test_every_augmentation_keeps_the_layout_repeats_and_changes_the_batch(
    name: str, kind: str, variant: str
):
    values = _inputs(kind, variant)
    fn = AUGMENTATIONS.get(name)
    once = fn(values, torch.Generator().manual_seed(0))
    assert _layout(once) == _layout(values)
    assert _same(once, fn(values, torch.Generator().manual_seed(0)))  # the generator decides everything
    assert not _same(once, values)
    assert not _same(once, fn(values, torch.Generator().manual_seed(1)))
    assert _same(values, _inputs(kind, variant))  # the input batch itself is left as it was


def test_every_modality_has_a_default_of_its_own_kind():
    for kind in MODALITIES.names():
        defaults = MODALITIES.get(kind).default_augmentation
        assert defaults and all(kind in AUGMENTATIONS.get(n).kinds for n in defaults), kind


def test_specaugment_masks_bands_and_spans_with_zeros():
    x = torch.ones(B, 24, 60)
    out = AUGMENTATIONS.get("specaugment")(x, torch.Generator().manual_seed(0))
    masked = out == 0
    assert masked.any() and set(out.unique().tolist()) <= {0.0, 1.0}
    # a masked value lies in a band masked over every frame or in a span masked over every band
    bands, frames = masked.all(dim=2), masked.all(dim=1)  # [B, mels], [B, T]
    assert torch.equal(masked, bands[:, :, None] | frames[:, None, :])
    assert (bands.sum(1) <= 2 * (24 // 6)).all() and (frames.sum(1) <= 2 * (60 // 10)).all()


def test_word_deletion_keeps_the_order_and_packs_the_words():
    x = torch.arange(2, 14).repeat(B, 1)
    x[:, 10:] = PAD_ID
    out = AUGMENTATIONS.get("word_deletion")(x, torch.Generator().manual_seed(0))
    for row in out:
        words = row[row != PAD_ID].tolist()
        assert words == sorted(words) and words[0] == 2  # in order, the first word kept
        assert (row[len(words) :] == PAD_ID).all()  # words first, then padding
    assert (out != PAD_ID).sum() < (x != PAD_ID).sum()


def test_token_dropout_only_replaces_words_by_the_unknown_word():
    x = _inputs("text")
    out = AUGMENTATIONS.get("token_dropout")(x, torch.Generator().manual_seed(0))
    changed = out != x
    assert changed.any() and (out[changed] == UNK_ID).all() and (x[changed] != PAD_ID).all()


def test_feature_dropout_makes_cells_missing_as_prediction_sees_them():
    x = _inputs("tabular")
    out = AUGMENTATIONS.get("feature_dropout")(x, torch.Generator().manual_seed(3))
    newly = (out["numeric_missing"] > 0) & (x["numeric_missing"] == 0)
    assert newly.any() and (out["numeric"][newly] == 0).all()
    gone = out["categorical"] != x["categorical"]
    assert gone.any() and (out["categorical"][gone] == 0).all()


def test_cutout_fills_one_square_with_the_rows_mean():
    x = torch.rand(B, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    out = AUGMENTATIONS.get("cutout")(x, torch.Generator().manual_seed(0))
    for row, before in zip(out[:, 0], x[:, 0], strict=True):
        changed = row != before
        assert changed.sum() <= 16 and torch.allclose(row[changed], before.mean().expand(int(changed.sum())))


KINDS = {"image": "image", "audio": "audio", "note": "text", "tabular": "tabular"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("off", {}),
        ("", {}),
        ("default", {m: MODALITIES.get(k).default_augmentation for m, k in KINDS.items()}),
        (
            "image=randaugment,audio=specaugment+speed",
            {"image": ("randaugment",), "audio": ("specaugment", "speed")},
        ),
        (
            "default,image=flip,note=none",
            {
                "image": ("flip",),
                "audio": MODALITIES.get("audio").default_augmentation,
                "tabular": MODALITIES.get("tabular").default_augmentation,
            },
        ),
        ("note=default", {"note": MODALITIES.get("text").default_augmentation}),
    ],
)
def test_the_augment_option_plans_each_modality(spec: str, expected: dict[str, tuple[str, ...]]):
    assert augment_plan(spec, KINDS) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("video=flip", "no modality 'video'"),
        ("image=specaugment", "'specaugment' does not apply to image"),
        ("image=twirl", "unknown augmentation 'twirl'"),
        ("sometimes", "expected off, default or MODALITY=NAME"),
    ],
)
def test_a_wrong_augment_option_is_named(spec: str, message: str):
    with pytest.raises((PolyfuseError, KeyError), match=message):
        augment_plan(spec, KINDS)


def test_fit_augments_training_batches_only(make_frame, monkeypatch: pytest.MonkeyPatch):
    seen: list[tuple[str, tuple[str, ...]]] = []
    tabular = type(MODALITIES.get("tabular"))
    original = tabular.augment

    def spy(self, values, generator, names=None):  # type: ignore[no-untyped-def]
        seen.append((self.kind, tuple(names or ())))
        return original(self, values, generator, names)

    monkeypatch.setattr(tabular, "augment", spy)
    frame = make_frame(200)
    options = {"max_epochs": 2, "baselines": False, "augment": "tabular=gaussian_noise"}
    predictor = polyfuse.fit(frame, label="kind", **options, **FAST)
    steps = predictor.metrics["fused"]["epochs"] * -(-predictor.metrics["rows"]["train"] // 64)
    assert seen == [("tabular", ("gaussian_noise",))] * steps  # the fused model's training steps only
    assert predictor.train_config.augment == "tabular=gaussian_noise"
    seen.clear()
    predictor.predict(frame.drop(columns=["kind"]))
    assert seen == []
    with pytest.raises(PolyfuseError, match="no modality 'tabulr'"):  # a typo fails before training
        polyfuse.fit(frame, label="kind", max_epochs=1, augment="tabulr=gaussian_noise", **FAST)


def test_older_configs_with_a_boolean_augment_still_read():
    from polyfuse.config import TrainConfig, from_dict

    assert TrainConfig(augment=True).augment == "default"  # type: ignore[arg-type]
    assert from_dict(TrainConfig, {"augment": False}).augment == "off"
