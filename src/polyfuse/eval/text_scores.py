"""Scores of generated texts (captions, answers) against reference texts.

The COCO caption metrics through ``pycocoevalcap`` (the ``caption`` extra): BLEU-1..4 (Papineni et
al., 2002; corpus-level, with the brevity penalty), CIDEr (Vedantam et al., 2015; TF-IDF weighted
n-gram agreement, its document frequencies taken from the references scored) and ROUGE-L (Lin,
2004). Texts are compared as the builtin text tokenizer's lower-cased words without punctuation,
which stands in for the COCO PTB tokenizer (that one needs Java). ``exact_match`` is the share of
texts equal word for word to one of their references: the accuracy of a generated answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from polyfuse.data.modalities.text import tokenize
from polyfuse.errors import PolyfuseError
from polyfuse.extras import require

PUNCTUATION = frozenset(".,?!:;-'`")  # dropped as the COCO PTB tokenizer drops them


def normalise(text: str) -> str:
    """The text as the scorers read it: lower-cased words, punctuation dropped, single spaces."""
    return " ".join(w for w in tokenize(text) if not set(w) <= PUNCTUATION)


def text_scores(generated: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``bleu_1`` .. ``bleu_4``, ``cider``, ``rouge_l`` and ``exact_match`` of ``generated[i]`` against
    the reference texts ``references[i]`` (one or more each)."""
    if len(generated) != len(references) or not len(generated):
        raise PolyfuseError(f"{len(generated)} generated texts for {len(references)} sets of references")
    if any(not refs for refs in references):
        raise PolyfuseError("every generated text needs at least one reference")
    bleu = require("pycocoevalcap.bleu.bleu", "caption", "BLEU scores").Bleu
    cider = require("pycocoevalcap.cider.cider", "caption", "CIDEr scores").Cider
    rouge = require("pycocoevalcap.rouge.rouge", "caption", "ROUGE-L scores").Rouge
    res = {i: [normalise(g) or "<empty>"] for i, g in enumerate(generated)}  # the scorers reject ""
    gts = {i: [normalise(r) for r in refs] for i, refs in enumerate(references)}
    scores: dict[str, float] = {}
    bleus, _ = bleu(4).compute_score(gts, res, verbose=0)
    scores.update({f"bleu_{n}": float(b) for n, b in enumerate(bleus, start=1)})
    scores["cider"] = float(cider().compute_score(gts, res)[0])
    scores["rouge_l"] = float(rouge().compute_score(gts, res)[0])
    matched = [
        normalise(g) in {normalise(r) for r in refs} for g, refs in zip(generated, references, strict=True)
    ]
    scores["exact_match"] = sum(matched) / len(matched)
    return scores
