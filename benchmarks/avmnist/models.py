"""The benchmark's models as polyfuse parts: MultiBench's LeNet late fusion, LMF, single modalities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polyfuse.models.multimodal import MultimodalModel

IMAGE_LENET = {"in_channels": 1, "channels": 6, "additional_layers": 3}  # 28 px -> 48-d
AUDIO_LENET = {"in_channels": 1, "channels": 6, "additional_layers": 5}  # 112 px -> 192-d
MULTIBENCH_HEAD = {"hidden_dim": 100, "dropout": 0.0, "activation": "leaky_relu", "negative_slope": 0.2}


@dataclass
class BenchModel:
    """One benchmark model: encoders per modality, a fusion, a head, and its training recipe."""

    modalities: tuple[str, ...]
    fusion: str
    fusion_params: dict[str, Any]
    head: dict[str, Any]
    train: dict[str, Any]  # TrainConfig fields
    encoders: dict[str, tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: {"image": ("lenet", IMAGE_LENET), "audio": ("lenet", AUDIO_LENET)}
    )

    def build(self) -> MultimodalModel:
        import polyfuse.encoders  # noqa: F401  (registers the parts)
        import polyfuse.fusions  # noqa: F401
        import polyfuse.heads  # noqa: F401
        from polyfuse.models.multimodal import MultimodalModel
        from polyfuse.registry import ENCODERS, FUSIONS, HEADS

        encoders = {m: ENCODERS.build(*self.encoders[m][:1], **self.encoders[m][1]) for m in self.modalities}
        in_dims = {m: enc.output_dim for m, enc in encoders.items()}
        fusion = FUSIONS.build(self.fusion, in_dims=in_dims, **self.fusion_params)
        head = HEADS.build("multiclass", in_dim=fusion.output_dim, num_outputs=10, **self.head)
        return MultimodalModel(encoders, fusion, {"digit": head})


# MultiBench examples/multimedia/avmnist_simple_late_fusion.py: SGD lr 0.1, wd 1e-4, batch 40.
# Validation in batches of 40 too: oneDNN's scratch buffers for the 112 px convolutions grow with
# the batch, and larger evaluation batches raised the memory peak by ~0.4 GB for no speed gain.
SGD = {
    "optimizer": "sgd",
    "scheduler": "none",
    "batch_size": 40,
    "eval_batch_size": 40,
    "lr": 0.1,
    "weight_decay": 1e-4,
}
PLAIN_CONCAT = {"norm": False, "project": False}
LATE = {"combine": "mean", "hidden_dim": 128, "dropout": 0.1}
POLYFUSE_RECIPE = {
    "optimizer": "adamw",
    "scheduler": "cosine",
    "batch_size": 64,
    "lr": 2e-3,
    "modality_dropout": 0.3,
}

MODELS = {
    "multibench_late_fusion": BenchModel(("image", "audio"), "concat", PLAIN_CONCAT, MULTIBENCH_HEAD, SGD),
    # MultiBench examples/multimedia/avmnist_low_rank_tensor.py: rank 40, output 120, lr 0.05, wd 2e-4.
    "lmf": BenchModel(
        ("image", "audio"),
        "lmf",
        {"output_dim": 120, "rank": 40, "norm": False, "dropout": 0.0},
        MULTIBENCH_HEAD,
        {**SGD, "lr": 0.05, "weight_decay": 2e-4},
    ),
    "image_only": BenchModel(("image",), "concat", PLAIN_CONCAT, MULTIBENCH_HEAD, SGD),
    "audio_only": BenchModel(("audio",), "concat", PLAIN_CONCAT, MULTIBENCH_HEAD, SGD),
    # polyfuse's own recipe (AdamW 2e-3, cosine, modality dropout 0.2) with its gated fusion,
    # the best fusion of `polyfuse compare` on digits-av.
    "polyfuse_gmu": BenchModel(
        ("image", "audio"),
        "gmu",
        {},
        {"hidden_dim": 128},
        {"optimizer": "adamw", "scheduler": "cosine", "batch_size": 64, "lr": 2e-3, "modality_dropout": 0.2},
    ),
    # Decision-level late fusion: the mean of per-modality experts under a linear head is the mean
    # of per-modality logits (a product of experts), and modality dropout trains each expert to
    # decide alone, so the weaker image expert is not crowded out by the audio one.
    "polyfuse_late": BenchModel(("image", "audio"), "late", LATE, {"hidden_dim": 0}, POLYFUSE_RECIPE),
    # polyfuse_late, then its modality weights fit on the validation split
    # (train.weights.fit_modality_weights): on avmnist-hard the validation speaker is held out, so
    # it tells how far to trust the audio expert on a speaker it has not heard.
    "polyfuse_late_fitted": BenchModel(
        ("image", "audio"), "late", LATE, {"hidden_dim": 0}, {**POLYFUSE_RECIPE, "fit_modality_weights": True}
    ),
    # The same late fusion under MultiBench's SGD recipe (batch 40, lr 0.1), which gave the best
    # single-modality audio model on avmnist-hard, plus modality dropout 0.3.
    "polyfuse_late_sgd": BenchModel(
        ("image", "audio"), "late", LATE, {"hidden_dim": 0}, {**SGD, "modality_dropout": 0.3}
    ),
    # Its single-modality baselines: the same expert, head and recipe on one modality.
    "polyfuse_late_audio_only": BenchModel(("audio",), "late", LATE, {"hidden_dim": 0}, POLYFUSE_RECIPE),
    "polyfuse_late_image_only": BenchModel(("image",), "late", LATE, {"hidden_dim": 0}, POLYFUSE_RECIPE),
}
