"""Token attributions for text: integrated gradients on the token embeddings.

Token ids are integers, so the path integral runs in embedding space: the encoder's embedding
layer output is captured once, then replaced (by a forward hook) with points on the straight line
from zero embeddings to it. Scores are summed over the embedding width, one per token. An
ensemble's stacked text encoder has one embedding layer per unit: the path runs through all of
them at once (their outputs side by side), so a token's score counts every member that reads it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.config import plain
from polyfuse.eval.gradients import Attribution, integrated_gradients, skipped
from polyfuse.eval.probe import Feature, Probe
from polyfuse.models.ensemble import encoder_units

TOP_TOKENS = 15
EXAMPLES = 3  # sampled rows whose token scores are listed in full


def token_embedding_layer(encoder: nn.Module) -> nn.Module | None:
    """The layer that turns ids into token vectors: ``embed`` (builtin encoders) or a HuggingFace
    backbone's ``get_input_embeddings()``; None when there is none."""
    embed = getattr(encoder, "embed", None)
    if isinstance(embed, nn.Embedding):
        return embed
    get = getattr(getattr(encoder, "backbone", None), "get_input_embeddings", None)
    layer = get() if callable(get) else None
    return layer if isinstance(layer, nn.Module) else None


def embedding_layers(encoder: nn.Module) -> list[nn.Module]:
    """Every token embedding layer that reads the modality's ids: one per unit of an ensemble's
    stacked encoder (``models.ensemble.encoder_units``); empty when a unit has none."""
    layers = [token_embedding_layer(unit) for unit in encoder_units(encoder)]
    return [layer for layer in layers if layer is not None] if None not in layers else []


@torch.no_grad()
def embedding_output(
    probe: Probe, modality: str, layers: list[nn.Module], ids: Tensor
) -> tuple[Tensor, list[int]]:
    """What ``layers`` output when the modality's encoder reads ``ids``, side by side along the last
    axis ([n, T, sum of d], after trimming; the units of a stacked encoder trim the same ids alike),
    and each layer's width d."""
    captured: list[Tensor] = []
    handles = [
        layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach())) for layer in layers
    ]
    try:
        probe.encode_rows(modality, ids)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(captured, dim=-1).float(), [int(t.shape[-1]) for t in captured]


@contextmanager
def replaced_outputs(layers: list[nn.Module], widths: list[int], point: Tensor) -> Iterator[None]:
    """While active, each layer outputs its own slice (``widths`` along the last axis) of ``point``."""
    slices = torch.split(point, widths, dim=-1)
    handles = [
        layer.register_forward_hook(lambda _m, _i, _o, part=part: part)
        for layer, part in zip(layers, slices, strict=True)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def token_names(processor: Any, ids: Tensor) -> list[list[str]]:
    """Ids [n, T] -> token strings, with the processor's builtin vocabulary or its HF tokenizer."""
    if getattr(processor, "builtin", True):
        table = ["<pad>", "<unk>", *(getattr(processor, "vocab", None) or [])]
        return [[table[i] if 0 <= i < len(table) else "<unk>" for i in row] for row in ids.tolist()]
    tokenizer = processor._hf_tokenizer()  # the processor's own (cached) tokenizer
    return [list(tokenizer.convert_ids_to_tokens(row)) for row in ids.tolist()]


def special_ids(processor: Any, pad_id: int) -> set[int]:
    """Ids that are not words: padding, and the HF tokenizer's special tokens."""
    if getattr(processor, "builtin", True):
        return {pad_id}
    return {pad_id, *processor._hf_tokenizer().all_special_ids}


def text_attribution(
    probe: Probe, modality: str, rows: np.ndarray, steps: int, processor: Any
) -> Attribution:
    """Per-token IG scores of the sampled rows: the most influential tokens and a few full rows."""
    encoder = probe.model.encoders[modality]
    layers = embedding_layers(encoder)
    if not layers:
        return skipped("the text encoder has no token embedding layer to attribute on")
    all_ids = probe.table.inputs[modality]
    assert isinstance(all_ids, Tensor)
    ids = all_ids[torch.as_tensor(rows, dtype=torch.long)].long()  # [n, L]
    embedded, widths = embedding_output(probe, modality, layers, ids)  # [n, T, sum d]

    def encode(path_point: Tensor, ids_rows: Tensor) -> Feature:
        with replaced_outputs(layers, widths, path_point):
            return probe.encode_rows(modality, ids_rows)

    attr, delta = integrated_gradients(probe, modality, rows, embedded, ids, steps, encode)
    scores = attr.sum(dim=-1).numpy()  # [n, T]
    length = scores.shape[1]
    skip = special_ids(processor, int(getattr(encoder_units(encoder)[0], "pad_id", 0)))
    names = token_names(processor, ids[:, :length])
    row_ids = probe.table.row_ids or list(range(len(probe)))
    by_token: dict[str, list[float]] = defaultdict(list)
    examples = []
    for i, row in enumerate(rows):
        tokens = [(names[i][t], float(scores[i, t])) for t in range(length) if int(ids[i, t]) not in skip]
        for token, score in tokens:
            by_token[token].append(score)
        if i < EXAMPLES:
            examples.append({"row_id": plain(row_ids[row]), "tokens": [[t, round(s, 6)] for t, s in tokens]})
    ranked = sorted(by_token.items(), key=lambda kv: -abs(float(np.mean(kv[1]))))[:TOP_TOKENS]
    summary = {
        "method": "integrated_gradients",
        "on": "token embeddings",
        "baseline": "zero embeddings",
        "samples": len(rows),
        "n_steps": steps,
        "convergence_delta": delta,
        "top_tokens": [[t, round(float(np.mean(s)), 6), len(s)] for t, s in ranked],
        "examples": examples,
    }
    return Attribution(summary)
