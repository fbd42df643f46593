"""Retrieval metrics: how well one modality's embeddings find the matching rows of another's.

Every query (a row's embedding in the query modality) ranks every gallery row (embeddings in the
gallery modality) by cosine similarity. Which gallery rows are right: the query's own row, or, with
``groups``, every row of the query's group (on ``scenes`` the pictures whose ``content`` the caption
describes; on digits-av the recordings of the same digit). Scores are torchmetrics' retrieval
metrics over all queries: ``recall_at_<k>``, the share of queries with a right row among their k
nearest (cross-modal retrieval's Recall@K, as CLIP reports it: torchmetrics' hit rate; its
"recall" is the share of all right rows found, which differs once a query has several), the mean
reciprocal rank of the first right row (``mrr``) and mean average precision (``map``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

KS = (1, 5, 10)
CHUNK = 512  # queries scored at a time: the similarity block is CHUNK x gallery


def relevance(
    query_groups: Sequence[object] | None, gallery_groups: Sequence[object] | None, n: int
) -> Tensor:
    """bool [n, n]: row i of the queries matches row j of the gallery (same row, or same group)."""
    if query_groups is None or gallery_groups is None:
        return torch.eye(n, dtype=torch.bool)
    codes, inverse = np.unique(np.asarray([*query_groups, *gallery_groups], dtype=str), return_inverse=True)
    q, g = torch.as_tensor(inverse[:n]), torch.as_tensor(inverse[n:])
    return q.unsqueeze(1) == g.unsqueeze(0)


def retrieval_scores(
    queries: Tensor, gallery: Tensor, relevant: Tensor, ks: Sequence[int] = KS
) -> dict[str, float]:
    """``recall_at_<k>`` for each k, ``mrr`` and ``map`` of ``queries`` [N, D] against ``gallery``
    [M, D] (cosine similarity), with ``relevant`` bool [N, M]; queries without a relevant row are
    left out (torchmetrics' ``empty_target_action="skip"``)."""
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP, RetrievalMRR

    metrics = {
        **{f"recall_at_{k}": RetrievalHitRate(top_k=k, empty_target_action="skip") for k in ks},
        "mrr": RetrievalMRR(empty_target_action="skip"),
        "map": RetrievalMAP(empty_target_action="skip"),
    }
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    g = torch.nn.functional.normalize(gallery.float(), dim=-1)
    for start in range(0, len(q), CHUNK):
        scores = q[start : start + CHUNK] @ g.T  # [c, M]
        target = relevant[start : start + CHUNK]
        index = torch.arange(start, start + len(scores)).unsqueeze(1).expand_as(scores)
        for metric in metrics.values():
            metric.update(scores.flatten(), target.flatten(), indexes=index.flatten())
    return {name: round(float(metric.compute()), 6) for name, metric in metrics.items()}


def pair_scores(
    z: dict[str, Tensor],
    present: dict[str, Tensor],
    pairs: Sequence[tuple[str, str]],
    groups: Sequence[object] | None = None,
    ks: Sequence[int] = KS,
) -> dict[str, dict[str, float]]:
    """``"<query>-><gallery>"`` -> ``retrieval_scores``, both ways for each pair of modalities, over the
    rows holding both (``z``: unit embeddings [N, D] per modality, ``present``: bool [N]; a match is
    the same row, or with ``groups``, one value per row, a row of the same group). Pairs that fewer
    than 2 rows hold are left out."""
    return {
        f"{query}->{gallery}": retrieval_scores(z[query][rows], z[gallery][rows], relevant, ks)
        for query, gallery, rows, relevant in both_ways(present, pairs, groups)
    }


def both_ways(
    present: dict[str, Tensor], pairs: Sequence[tuple[str, str]], groups: Sequence[object] | None
) -> Iterator[tuple[str, str, Tensor, Tensor]]:
    """Each pair in both directions, as (query, gallery, the rows holding both [n], which of them match
    which: bool [n, n]); pairs fewer than 2 rows hold are left out."""
    for a, b in pairs:
        rows = (present[a] & present[b]).nonzero().flatten()
        if len(rows) < 2:
            continue
        kept = None if groups is None else [groups[i] for i in rows.tolist()]
        relevant = relevance(kept, kept, len(rows))
        yield a, b, rows, relevant
        yield b, a, rows, relevant


def pair_examples(
    z: dict[str, Tensor],
    present: dict[str, Tensor],
    pairs: Sequence[tuple[str, str]],
    groups: Sequence[object] | None = None,
    queries: int = 4,
    k: int = 3,
) -> dict[str, list[dict[str, Any]]]:
    """``"<query>-><gallery>"`` -> the first ``queries`` rows holding both modalities, each with its
    ``k`` nearest gallery rows among those rows: ``{"query": i, "hits": [{"row": j, "score": s,
    "match": bool}, ...]}`` (row numbers of ``z``; a match as in ``pair_scores``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for query, gallery, rows, relevant in both_ways(present, pairs, groups):
        scores = z[query][rows[:queries]] @ z[gallery][rows].T  # [q, n]
        top = scores.topk(min(k, len(rows)), dim=1)
        out[f"{query}->{gallery}"] = [
            {
                "query": int(rows[i]),
                "hits": [
                    {"row": int(rows[j]), "score": round(float(s), 4), "match": bool(relevant[i, j])}
                    for s, j in zip(top.values[i].tolist(), top.indices[i].tolist(), strict=True)
                ],
            }
            for i in range(len(top.values))
        ]
    return out
