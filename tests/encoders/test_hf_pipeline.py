"""HuggingFace image and audio adapters inside a whole fit: wiring, freezing, save/load.

No pretrained image or audio weights exist offline, so tiny randomly initialised models are saved
to folders and loaded by path, exactly as a downloaded model would be.
"""

from __future__ import annotations

from pathlib import Path

import polyfuse


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
