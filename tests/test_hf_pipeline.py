"""HuggingFace image and audio adapters inside a whole fit: wiring, freezing, save/load.

No pretrained image or audio weights exist offline, so tiny randomly initialised models are saved
to folders and loaded by path, exactly as a downloaded model would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import polyfuse


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from transformers import ViTConfig, ViTModel, Wav2Vec2Config, Wav2Vec2Model

    root = tmp_path_factory.mktemp("hf")
    vit = ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, num_channels=3)  # fmt: skip
    w2v = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)  # fmt: skip
    ViTModel(vit).save_pretrained(root / "vit")
    Wav2Vec2Model(w2v).save_pretrained(root / "w2v")
    return {"image": str(root / "vit"), "audio": str(root / "w2v")}


def test_fit_with_hf_image_and_audio_adapters(
    media_table: Path, tiny_models: dict[str, str], tmp_path: Path
) -> None:
    model = polyfuse.fit(
        media_table,
        label="label",
        on_error="skip",
        verbose=False,
        baselines=False,
        max_epochs=2,
        encoders={"img": "hf_image", "clip": "hf_audio", "text": "text_bag"},
        encoder_params={
            "img": {"pretrained": tiny_models["image"]},
            "clip": {"pretrained": tiny_models["audio"]},
        },
        freeze={"img": True},
        processor_options={"clip": {"duration": 0.2}},
    )
    # The waveform model gets waveforms: the processor option follows the encoder's needs.
    assert model.preprocessor.options["clip"]["features"] == "waveform"
    image_encoder = model.model.encoders["img"]
    assert not any(p.requires_grad for p in image_encoder.backbone.parameters())
    assert any(p.requires_grad for p in model.model.encoders["clip"].parameters())
    before = model.predict_proba(media_table, on_error="skip")
    again = polyfuse.load(model.save(tmp_path / "model"))
    assert (again.predict_proba(media_table, on_error="skip").to_numpy() == before.to_numpy()).all()
