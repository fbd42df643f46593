"""A text generator conditioned on other modalities: captioning and generative question answering.

The encoders of the condition modalities give a memory of tokens: each token-capable encoder's
tokens (an image CNN's feature-map positions, a text encoder's words: ``forward_tokens``), each with
a learned position and modality embedding, plus, for every modality, its pooled embedding mapped
to ``prefix_length`` tokens (ClipCap's prefix, Mokady et al., 2021). A small transformer decoder
(causal self-attention over the words so far, cross-attention to the memory) predicts the next
word. With tokens the decoder can look at each part of an image ("Show, Attend and Tell", Xu et
al., 2015); the prefix alone (``memory="prefix"``) is ClipCap's setting.

Word ids follow the builtin text processor's vocabulary (0 padding, 1 unknown, then words); the
decoder adds begin and end of sequence as the two ids after it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.data.batch import Batch
from polyfuse.errors import PolyfuseError
from polyfuse.models.multimodal import MultimodalModel, has_tokens

MAX_MEMORY = 512  # memory positions a modality may give (learned position embeddings)
MEMORY_KINDS = ("tokens", "prefix")


class TokenSource(nn.Module):
    """Stands in for a fusion: it only says that the encoders should give tokens (and frozen
    encoders' caches hold tokens); the decoder reads them."""

    output_dim = 0
    wants_tokens = True

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        raise RuntimeError("a text generator has no fusion: use logits(batch, ids) or generate(batch)")


class TextGenerator(MultimodalModel):
    """Condition encoders -> memory tokens -> transformer decoder -> next-word logits.

    Args:
        encoders: Modality -> encoder (the conditions).
        vocab_size: Size of the target's word vocabulary (padding and unknown included).
        max_length: Longest generated text, in words.
        d_model: Width of the decoder and memory tokens.
        layers: Decoder layers.
        heads: Attention heads.
        prefix_length: Memory tokens made from each modality's pooled embedding.
        memory: ``"tokens"`` (encoder tokens + prefix) or ``"prefix"`` (prefix only).
        dropout: Dropout in the decoder.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        vocab_size: int,
        max_length: int = 32,
        d_model: int = 128,
        layers: int = 2,
        heads: int = 4,
        prefix_length: int = 4,
        memory: str = "tokens",
        dropout: float = 0.1,
    ) -> None:
        if memory not in MEMORY_KINDS:
            raise PolyfuseError(f"memory must be one of {MEMORY_KINDS}, got {memory!r}")
        super().__init__(encoders, TokenSource(), {})
        self.vocab_size, self.max_length, self.memory_kind = vocab_size, max_length, memory
        self.bos, self.eos = vocab_size, vocab_size + 1
        self.prefix_length, self.d_model = prefix_length, d_model
        self.token_maps = nn.ModuleDict(
            {m: nn.Linear(_token_dim(enc), d_model) for m, enc in encoders.items() if self._uses_tokens(m)}
        )
        self.prefix_maps = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Linear(_token_dim(enc), d_model),
                    nn.GELU(),
                    nn.Linear(d_model, d_model * prefix_length),
                )
                for m, enc in encoders.items()
            }
        )
        self.memory_positions = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(MAX_MEMORY, d_model) * 0.02) for m in self.token_maps}
        )
        self.modality_embedding = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(d_model) * 0.02) for m in encoders}
        )
        self.null_memory = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)  # a row with no condition
        self.words = nn.Embedding(vocab_size + 2, d_model, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(max_length + 2, d_model) * 0.02)
        layer = nn.TransformerDecoderLayer(
            d_model, heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(d_model)

    def _uses_tokens(self, modality: str) -> bool:
        return self.memory_kind == "tokens" and has_tokens(self.encoders[modality])

    def memory(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Memory tokens [B, T, d_model] and which of them are padding [B, T] (True: ignore)."""
        tokens, valid = self.tokens(batch)
        device = self.null_memory.device
        parts = [self.null_memory.expand(len(batch), -1, -1)]
        pads = [torch.zeros(len(batch), 1, dtype=torch.bool, device=device)]
        for m in self.encoders:
            present = batch.mask[m].bool()  # [B]
            seq = tokens[m] if tokens[m].dim() == 3 else tokens[m].unsqueeze(1)  # [B, T, D]
            ok = valid.get(m, torch.ones(seq.shape[:2], dtype=torch.bool, device=device)) & present.unsqueeze(
                1
            )
            pooled = (seq * ok.unsqueeze(-1)).sum(1) / ok.sum(1, keepdim=True).clamp(min=1)  # [B, D]
            prefix = self.prefix_maps[m](pooled).view(len(batch), self.prefix_length, self.d_model)
            parts.append(prefix + self.modality_embedding[m])
            pads.append(~present.unsqueeze(1).expand(-1, self.prefix_length))
            if m in self.token_maps:
                if seq.shape[1] > MAX_MEMORY:
                    raise PolyfuseError(f"{m!r} gives {seq.shape[1]} tokens, more than {MAX_MEMORY}")
                mapped = self.token_maps[m](seq) + self.memory_positions[m][: seq.shape[1]]
                parts.append(mapped + self.modality_embedding[m])
                pads.append(~ok)
        return torch.cat(parts, dim=1), torch.cat(pads, dim=1)

    def decode(self, memory: Tensor, memory_pad: Tensor, ids: Tensor) -> Tensor:
        """Next-word logits [B, L, vocab_size + 2] after each prefix of ``ids`` [B, L] (begin first)."""
        length = ids.shape[1]
        x = self.words(ids) + self.positions[:length]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=ids.device), diagonal=1)
        out = self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_pad)
        return F.linear(self.norm(out), self.words.weight)  # tied input and output embeddings

    def logits(self, batch: Batch, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: logits [B, L + 1, V] for ``targets`` [B, L] (word ids, 0-padded) and the
        ids they should predict (the words, then end of sequence; 0 where nothing is to predict)."""
        memory, pad = self.memory(batch)
        inputs, wanted = teacher_forcing(targets, self.bos, self.eos)
        return self.decode(memory, pad, inputs), wanted

    @torch.no_grad()
    def generate(self, batch: Batch, beam: int = 1, max_length: int | None = None) -> list[list[int]]:
        """Word ids of each row's text (no begin / end ids): greedy with ``beam=1``, else beam search
        keeping the ``beam`` most probable sequences (sum of log-probabilities, length-normalised
        when finished)."""
        memory, pad = self.memory(batch)
        limit = min(max_length or self.max_length, self.max_length)
        if beam <= 1:
            return self._greedy(memory, pad, limit)
        return [self._beam(memory[i : i + 1], pad[i : i + 1], beam, limit) for i in range(len(batch))]

    def _greedy(self, memory: Tensor, pad: Tensor, limit: int) -> list[list[int]]:
        ids = torch.full((memory.shape[0], 1), self.bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(memory.shape[0], dtype=torch.bool, device=memory.device)
        for _ in range(limit + 1):
            step = self._next_log_probs(memory, pad, ids).argmax(-1)  # [B]
            step = torch.where(done, torch.zeros_like(step), step)
            ids = torch.cat([ids, step.unsqueeze(1)], dim=1)
            done |= step == self.eos
            if bool(done.all()):
                break
        return [_words(row, self.eos) for row in ids[:, 1:].tolist()]

    def _next_log_probs(self, memory: Tensor, pad: Tensor, ids: Tensor) -> Tensor:
        """Log-probabilities [B, V] of the word after ``ids``; padding, unknown and begin are never chosen."""
        logp = self.decode(memory, pad, ids)[:, -1].log_softmax(-1)
        logp[:, [0, 1, self.bos]] = -math.inf
        return logp

    def _beam(self, memory: Tensor, pad: Tensor, beam: int, limit: int) -> list[int]:
        alive: list[tuple[float, list[int]]] = [(0.0, [self.bos])]
        finished: list[tuple[float, list[int]]] = []
        for _ in range(limit + 1):
            ids = torch.tensor([seq for _, seq in alive], device=memory.device)
            logp = self._next_log_probs(memory.expand(len(alive), -1, -1), pad.expand(len(alive), -1), ids)
            scores = torch.tensor([s for s, _ in alive], device=memory.device).unsqueeze(1) + logp  # [A, V]
            top = scores.flatten().topk(min(beam, scores.numel()))
            alive = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                row, word = divmod(flat, scores.shape[1])
                seq = [*ids[row].tolist(), word]
                if word == self.eos:
                    finished.append((score / (len(seq) - 1), seq))  # per word, the end included
                else:
                    alive.append((score, seq))
            if not alive or len(finished) >= beam:  # HF's early stopping: as many finished as beams
                break
        finished += [(s / (len(q) - 1), q) for s, q in alive]  # cut at the length limit
        best = max(finished, key=lambda f: f[0])[1]
        return _words(best[1:], self.eos)


def teacher_forcing(targets: Tensor, bos: int, eos: int) -> tuple[Tensor, Tensor]:
    """``targets`` [B, L] (0-padded word ids) -> decoder inputs [B, L + 1] (begin, then the words) and
    the ids to predict [B, L + 1] (the words, then end; 0 after it)."""
    lengths = (targets != 0).sum(1)  # [B]
    inputs = torch.cat([torch.full_like(targets[:, :1], bos), targets], dim=1)
    wanted = torch.cat([targets, torch.zeros_like(targets[:, :1])], dim=1)
    wanted[torch.arange(len(targets)), lengths] = eos
    return inputs, wanted


def _words(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def _token_dim(encoder: nn.Module) -> int:
    """Width of what the encoder gives the memory: its tokens' when it has them, else its embedding's."""
    width = getattr(encoder, "token_dim", None) if has_tokens(encoder) else None
    return int(width or encoder.output_dim)  # type: ignore[arg-type]
