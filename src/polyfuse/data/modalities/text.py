"""Text: one column of strings -> token ids int64 [N, max_length].

The builtin tokenizer lower-cases and splits into words and punctuation, with a vocabulary learnt
from the training rows (0 = padding, 1 = unknown). Any other ``tokenizer`` value is a Hugging Face
model name or folder loaded with ``AutoTokenizer``; then only that name is saved.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polyfuse.data.modalities.base import Encoded
from polyfuse.data.modalities.modality import BadValue, Column, Field, Modality, Rule, utf8
from polyfuse.data.table import missing_mask
from polyfuse.data.vocabulary import PAD_ID, UNK_ID
from polyfuse.registry import MODALITIES, PROCESSORS

_TOKEN = re.compile(r"\w+|[^\w\s]")


class TextModality(Modality):
    """Free text: an encoder chosen by ``fit`` ("auto"), integrated gradients per token."""

    kind = "text"
    default_augmentation = ("token_dropout", "word_swap")  # data.augmentations.text
    roles = ("text",)
    default_encoder = "auto"
    pretrained_encoder = "hf_text"
    attribution = "tokens"

    def rules(self) -> list[tuple[int, Rule]]:
        # Long strings are text before few distinct values make a category (rank 70); any string
        # left over that is not an identifier (rank 80) is text too.
        return [(60, _long_strings), (90, lambda column: "text")]

    def detail(self, series: pd.Series, role: str, base_dir: str | Path | None) -> str:
        words = series.dropna().astype(str).str.split().str.len()
        return f"{words.mean():.1f} words on average, {int(missing_mask(series).sum())} missing"

    def decode(self, field: Field, value: Any, limits: Any) -> str:
        if not isinstance(value, str):
            raise BadValue(f"expected text, got {type(value).__name__}")
        # A lone surrogate is not UTF-8 (Arrow strings once failed the batch on it).
        if utf8(value) != value:
            raise BadValue("text is not valid Unicode (a lone surrogate)")
        if len(value) > limits.max_text_chars:
            raise BadValue(f"text of {len(value)} characters; limit {limits.max_text_chars}", 413)
        return value

    def example(self, field: Field) -> str:
        return "warm up"

    def field_schema(self, field: Field, limits: Any, multipart: bool) -> dict[str, Any]:
        return {"type": "string", "maxLength": limits.max_text_chars}

    def form(self, field: Field, limits: Any) -> dict[str, Any]:
        chars = limits.max_text_chars
        return {
            "input": "textarea",
            "max_length": chars,
            "hint": f"up to {chars} characters" if chars else "",
        }


MODALITIES.register("text")(TextModality())  # one instance per kind


def _long_strings(column: Column) -> str | None:
    strings = column.strings
    long = strings.str.split().str.len().median() >= 4 or strings.str.len().mean() > 60
    return "text" if long else None


def tokenize(text: str) -> list[str]:
    """The builtin tokenizer: lower-cased words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


@PROCESSORS.register("text")
class TextProcessor:
    """Tokenise a text column.

    Args:
        columns: The one text column.
        tokenizer: ``"builtin"`` or a Hugging Face tokenizer name / folder.
        max_length: Tokens kept per row (longer texts are truncated, shorter ones padded).
        min_freq: Training occurrences a word needs to enter the builtin vocabulary.
        max_size: Largest builtin vocabulary, special ids included.
        vocab: Builtin vocabulary learnt by ``fit``, in id order from id 2.
    """

    kind = "text"

    def __init__(
        self,
        columns: list[str],
        tokenizer: str = "builtin",
        max_length: int = 64,
        min_freq: int = 1,
        max_size: int = 20000,
        vocab: list[str] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.tokenizer = str(tokenizer)
        self.max_length = int(max_length)
        self.min_freq = int(min_freq)
        self.max_size = int(max_size)
        self.vocab = list(vocab) if vocab is not None else None
        self._ids = {w: i + 2 for i, w in enumerate(self.vocab or [])}
        self._hf: Any = None

    @property
    def builtin(self) -> bool:
        return self.tokenizer == "builtin"

    def fit(self, frame: pd.DataFrame, base_dir: Path) -> None:
        if not self.builtin:
            self._hf_tokenizer()  # fail early on a bad name
            return
        counts: Counter[str] = Counter()
        for text in self._texts(frame)[1]:
            counts.update(tokenize(text))
        ranked = sorted((w for w, c in counts.items() if c >= self.min_freq), key=lambda w: (-counts[w], w))
        self.vocab = ranked[: max(0, self.max_size - 2)]
        self._ids = {w: i + 2 for i, w in enumerate(self.vocab)}

    def _texts(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        series = frame[self.columns[0]]
        present = ~missing_mask(series)
        return present, [str(v) for v, p in zip(series, present, strict=True) if p]

    def transform(self, frame: pd.DataFrame, base_dir: Path) -> Encoded:
        present, texts = self._texts(frame)
        ids = torch.full((len(present), self.max_length), self.pad_id, dtype=torch.long)  # [N, L]
        if texts:
            ids[torch.from_numpy(present)] = self._encode(texts)
        return Encoded(values=ids, present=torch.from_numpy(present))

    def _encode(self, texts: list[str]) -> torch.Tensor:
        if not self.builtin:
            tok = self._hf_tokenizer()
            out = tok(texts, padding="max_length", truncation=True, max_length=self.max_length)
            return torch.tensor(out["input_ids"], dtype=torch.long)
        ids = torch.full((len(texts), self.max_length), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self._ids.get(w, UNK_ID) for w in tokenize(text)[: self.max_length]]
            if tokens:
                ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids

    def _hf_tokenizer(self) -> Any:
        if self._hf is None:
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(self.tokenizer)
            if self._hf.pad_token is None and self._hf.eos_token is not None:
                self._hf.pad_token = self._hf.eos_token  # GPT-style tokenizers have no pad token
        return self._hf

    @property
    def pad_id(self) -> int:
        if self.builtin:
            return PAD_ID
        pad = self._hf_tokenizer().pad_token_id
        return int(pad) if pad is not None else 0

    @property
    def vocab_size(self) -> int:
        return len(self._hf_tokenizer()) if not self.builtin else len(self.vocab or []) + 2

    def encoder_kwargs(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
            "max_length": self.max_length,
            "tokenizer": self.tokenizer,
        }

    def state(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "tokenizer": self.tokenizer,
            "max_length": self.max_length,
            "min_freq": self.min_freq,
            "max_size": self.max_size,
            "vocab": self.vocab if self.builtin else None,
        }
