"""Text augmentations on token ids [B, L] (0 pads, 1 is the built-in vocabulary's unknown word),
after EDA (Wei & Zou, 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks"): random deletion and swap, and token dropout to the unknown word. They read
the built-in tokenizer's ids (``text_bag``, ``text_transformer``); a frozen pretrained text encoder's
outputs are computed once and not augmented.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyfuse.data.augmentations.base import augmentation, chance
from polyfuse.data.vocabulary import PAD_ID, UNK_ID

RATE = 0.1  # share of the words each augmentation touches


@augmentation("token_dropout", "text")
def token_dropout(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each word becomes the unknown word with probability 0.1."""
    hit = chance(generator, tuple(x.shape), RATE, x.device) & (x != PAD_ID)
    return torch.where(hit, torch.full_like(x, UNK_ID), x)


@augmentation("word_deletion", "text")
def word_deletion(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each word is deleted with probability 0.1 (a row keeps at least its first word); the rest
    close up to the left, padding after them."""
    words = x != PAD_ID
    drop = chance(generator, tuple(x.shape), RATE, x.device) & words
    drop[:, 0] = False
    kept = words & ~drop
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)  # kept words first, in order
    packed = torch.gather(x, 1, order)
    return torch.where(torch.gather(kept, 1, order), packed, torch.full_like(x, PAD_ID))


@augmentation("word_swap", "text")
def word_swap(x: Tensor, generator: torch.Generator) -> Tensor:
    """Two words of a row (of two or more) trade places."""
    rows = x.shape[0]
    count = (x != PAD_ID).sum(dim=1)  # words come first, then padding
    i = (torch.rand(rows, generator=generator).to(x.device) * count).long()
    j = (torch.rand(rows, generator=generator).to(x.device) * count).long()
    swap = count >= 2
    i, j = torch.where(swap, i, 0), torch.where(swap, j, 0)
    out = x.clone()
    arange = torch.arange(rows, device=x.device)
    out[arange, i], out[arange, j] = x[arange, j], x[arange, i]
    return out
