"""Approximate search indexes against exact search, on 100,000 embeddings a polyfuse model makes.

    python -m benchmarks.index [--rows 100000] [--queries 1000] [--seeds 0-2]

The embeddings: the mean-pooled MiniLM (``hf_text``, the default pretrained text encoder, offline)
of ``--rows`` + ``--queries`` distinct scenes-style captions (``scenes.place`` + ``scenes.caption``:
1-4 coloured shapes in one of six phrasings), embedded once. Per seed, ``--queries`` of them drawn
at random are the queries and the other ``--rows`` are indexed; each index kind is built over the
rows (``polyfuse.retrieval.
SearchIndex``, what ``polyfuse index`` builds) and queried with every query, k = 10; Recall@10 is
the share of the exact (``flat``) top 10 that the index returns, and the speed-up is the exact
index's query time over the index's. HNSW (``m`` 32) at several ``ef_search``, IVF (``nlist`` =
4√N) at several ``nprobe``. Timings: wall clock of one batched ``search`` call over all queries,
torch and faiss on the machine's cores, nothing else running.

Writes ``results/index.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import code_version, commit_list, machine_line, mean_std, seeds

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEM = RESULTS / "index"
CACHE = Path.home() / ".cache" / "polyfuse" / "benchmarks"
SETTINGS: list[tuple[str, dict[str, int]]] = [
    ("flat", {}),
    *[("hnsw", {"m": 32, "ef_search": ef}) for ef in (16, 32, 64, 128)],
    *[("ivf", {"nprobe": p}) for p in (4, 8, 16, 32)],
]
K = 10


def captions(count: int, seed: int) -> list[str]:
    """``count`` distinct captions of random scenes (drawn with ``seed``)."""
    from polyfuse.data.datasets.scenes import caption, place

    rng = np.random.default_rng(seed)
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(caption(place(rng), rng), None)
    return list(seen)


def embed(texts: list[str], seed: int) -> np.ndarray:
    """Unit MiniLM embeddings [N, 384] of ``texts`` (cached on disk by count and seed)."""
    import torch

    from polyfuse.data.modalities.text import TextProcessor
    from polyfuse.encoders.text import HFTextEncoder, default_text_model_path

    path = CACHE / f"minilm-captions-{len(texts)}-seed{seed}.npy"
    if path.is_file():
        return np.load(path)
    model_path = default_text_model_path()
    words = TextProcessor(["text"], tokenizer=str(model_path), max_length=48)
    encoder = HFTextEncoder(pretrained=model_path, freeze=True).eval()
    ids = words.transform(pd.DataFrame({"text": texts}), Path.cwd()).values
    with torch.no_grad():
        out = torch.cat([encoder(ids[i : i + 512]) for i in range(0, len(ids), 512)])
    unit = torch.nn.functional.normalize(out, dim=-1).numpy().astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, unit)
    return unit


def run(vectors: np.ndarray, queries: int, seed: int) -> list[dict[str, Any]]:
    from polyfuse.retrieval import SearchIndex

    order = np.random.default_rng(seed).permutation(len(vectors))
    asked, indexed = vectors[order[:queries]], vectors[order[queries:]]
    rows = len(indexed)
    ids = [str(i) for i in range(rows)]
    exact: list[set[str]] = []
    out = []
    for kind, params in SETTINGS:
        start = time.perf_counter()
        index = SearchIndex.build(indexed, ids, "text", kind, **params)
        built = time.perf_counter() - start
        start = time.perf_counter()
        found = index.search(asked, k=K)
        searched = time.perf_counter() - start
        hits = [{row for row, _ in result} for result in found]
        if kind == "flat":
            exact, exact_seconds = hits, searched
        recall = float(np.mean([len(h & e) / K for h, e in zip(hits, exact, strict=True)]))
        out.append(
            {
                "seed": seed,
                "rows": rows,
                "queries": queries,
                "kind": kind,
                "params": " ".join(f"{k}={v}" for k, v in index.params.items()),
                "recall_at_10": round(recall, 4),
                "build_seconds": round(built, 3),
                "query_ms": round(1000 * searched / queries, 4),
                "speedup": round(exact_seconds / searched, 2),
            }
        )
        print(out[-1], flush=True)
    return out


def write(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    frame.to_csv(STEM.with_suffix(".csv"), index=False)
    commits = commit_list(frame)
    lines = [
        "# Approximate search indexes against exact search",
        "",
        f"Machine: {machine_line()}; commit {commits}. Command: `python -m benchmarks.index --rows "
        f"{args.rows} --queries {args.queries} --seeds {args.seeds}`.",
        "",
        f"{args.rows:,} unit MiniLM embeddings of distinct scenes-style captions indexed, {args.queries:,} "
        "other captions as queries, k = 10. Recall@10: the share of the exact top 10 returned. "
        "Mean ± std over seeds (which captions are the queries).",
        "",
        "| kind | options | seeds | Recall@10 | query ms | speed-up over flat | build s |",
        "|---|---|---|---|---|---|---|",
    ]
    for (kind, params), g in frame.groupby(["kind", "params"], sort=False):
        lines.append(
            f"| {kind} | {params if isinstance(params, str) else ''} | {len(g)} "
            f"| {mean_std(g['recall_at_10'])} "
            f"| {mean_std(g['query_ms'])} | {mean_std(g['speedup'], 1)} | {mean_std(g['build_seconds'], 2)} |"
        )
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seeds", default="0-2")
    args = parser.parse_args()
    commit = code_version()
    frame = pd.DataFrame()
    vectors = embed(captions(args.rows + args.queries, 0), 0)
    for seed in seeds(args.seeds):
        frame = pd.concat([frame, pd.DataFrame(run(vectors, args.queries, seed)).assign(commit=commit)])
        write(frame, args)
    print(STEM.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
