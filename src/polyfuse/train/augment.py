"""Training-time augmentation: each modality's augmentations (``data.augmentations``, through
``Modality.augment``) applied to a training batch as ``TrainConfig.augment`` asks. Validation,
testing and prediction never see them, and frozen encoders' cached outputs are left as they are.

``augment`` is "off", "default" (every modality its ``default_augmentation``) or comma-separated
``MODALITY=NAME+NAME`` items naming ``AUGMENTATIONS`` entries for a modality (its input name, e.g.
``image`` or a column's), ``MODALITY=none`` or ``MODALITY=default``; "default" among the items gives
the modalities not named their defaults.
"""

from __future__ import annotations

import dataclasses

import torch

from polyfuse.data.batch import Batch
from polyfuse.errors import PolyfuseError
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import AUGMENTATIONS, MODALITIES

OFF = ("off", "none", "")
Plan = dict[str, tuple[str, ...]]  # modality -> AUGMENTATIONS names, in order


def augment_plan(spec: str, kinds: dict[str, str], strict: bool = True) -> Plan:
    """What ``spec`` asks of each modality (``kinds``: modality name -> kind); modalities without
    augmentation are left out. Unknown augmentations, an augmentation of another kind and (``strict``)
    a modality not in ``kinds`` fail here, before training; not ``strict`` (a model of some of a
    table's modalities) skips the others."""
    import polyfuse.data.augmentations  # noqa: F401  (registers them)

    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items or items == [items[0]] and items[0].lower() in OFF:
        return {}
    chosen: dict[str, tuple[str, ...] | None] = {}  # None: the modality's default
    everyone = False
    for item in items:
        if "=" not in item:
            if item.lower() != "default":
                raise PolyfuseError(f"augment: expected off, default or MODALITY=NAME+NAME, got {item!r}")
            everyone = True
            continue
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in kinds and strict:
            raise PolyfuseError(f"augment: no modality {name!r}; the model's: {', '.join(sorted(kinds))}")
        chosen[name] = None if value == "default" else () if value in OFF else tuple(value.split("+"))
    plan: Plan = {}
    for name, kind in kinds.items():
        if name not in chosen and not everyone:
            continue
        names = chosen.get(name)
        names = MODALITIES.get(kind).default_augmentation if names is None else names
        for augmentation in names:
            if kind not in getattr(AUGMENTATIONS.get(augmentation), "kinds", ()):
                fitting = [n for n in AUGMENTATIONS.names() if kind in AUGMENTATIONS.get(n).kinds]
                raise PolyfuseError(
                    f"augment: {augmentation!r} does not apply to {name} ({kind}); "
                    f"{kind}'s: {', '.join(fitting)}"
                )
        if names:
            plan[name] = tuple(names)
    return plan


def model_kinds(model: MultimodalModel) -> dict[str, str]:
    """Modality name -> kind of the model's encoders that read a modality kind."""
    kinds = {name: getattr(encoder, "modality", None) for name, encoder in model.encoders.items()}
    return {name: kind for name, kind in kinds.items() if kind in MODALITIES.names()}


def augment_batch(batch: Batch, model: MultimodalModel, plan: Plan, seed: int, step: int) -> Batch:
    """``batch`` with each planned modality's inputs augmented (same seed and step, same batch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    kinds = model_kinds(model)
    inputs = dict(batch.inputs)
    for name, names in plan.items():
        if name in batch.inputs and name not in batch.cached:
            inputs[name] = MODALITIES.get(kinds[name]).augment(batch.inputs[name], generator, names)
    return dataclasses.replace(batch, inputs=inputs, rows=None)  # no longer the table's rows
