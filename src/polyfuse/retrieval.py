"""Search a table's rows by any aligned modality: a faiss index of one modality's embeddings from a
pre-trained (aligned) model, queried with another modality's embedding of a text, a picture or a
recording.

Index kinds (faiss-cpu, the ``retrieval`` extra), all on inner product of unit vectors (cosine):

* ``flat``: exact search over every row (the default; what the others are measured against);
* ``hnsw``: a graph (Malkov & Yashunin, TPAMI 2018), for large tables; ``m`` links per node,
  ``ef_search`` candidates per query. faiss cannot delete from it, so removed rows are left out of
  results (the index over-fetches by their number) until the index is rebuilt;
* ``ivf``: ``nlist`` k-means cells (trained on the indexed rows), ``nprobe`` of them searched.

Rows are named by their table index value (or an ``id_column``); ``add`` and ``remove`` change the
index in place, ``save`` writes ``index.faiss`` + ``index.json`` to a folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import save_json
from polyfuse.errors import PolyfuseError
from polyfuse.extras import require
from polyfuse.formats import read_versioned

INDEX_FORMAT = 1
KINDS = ("flat", "hnsw", "ivf")
DEFAULTS: dict[str, dict[str, int]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_search": 64},
    "ivf": {"nlist": 0, "nprobe": 8},
}


def _faiss() -> Any:
    return require("faiss", "retrieval", "search indexes (faiss-cpu)")


@dataclass
class SearchIndex:
    """A faiss index of unit embeddings, keyed by row ids (strings as given, kept in ``ids``)."""

    kind: str
    dim: int
    modality: str  # the indexed modality of the aligned model
    params: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # faiss id k -> the row's id
    removed: set[int] = field(default_factory=set)  # faiss ids left out of an hnsw index's results
    deleted: set[int] = field(default_factory=set)  # faiss ids deleted from a flat or ivf index
    model: str | None = None  # the pre-trained model directory that made the embeddings
    index: Any = None

    @classmethod
    def build(
        cls, embeddings: np.ndarray, ids: list[Any], modality: str, kind: str = "flat", **params: int
    ) -> SearchIndex:
        """An index of ``embeddings`` [N, D] (unit rows) named by ``ids``."""
        if kind not in KINDS:
            raise PolyfuseError(f"index kind must be one of {', '.join(KINDS)}, not {kind!r}")
        unknown = set(params) - set(DEFAULTS[kind])
        if unknown:
            raise PolyfuseError(f"{kind} index options are {sorted(DEFAULTS[kind])}, not {sorted(unknown)}")
        chosen = {**DEFAULTS[kind], **params}
        if kind == "ivf" and not chosen["nlist"]:
            chosen["nlist"] = max(1, int(4 * np.sqrt(len(embeddings))))  # faiss's rule of thumb
        made = cls(kind, int(embeddings.shape[1]), modality, chosen)
        made.index = made._empty(np.asarray(embeddings, dtype=np.float32))
        made.add(embeddings, ids)
        return made

    def _empty(self, sample: np.ndarray) -> Any:
        faiss = _faiss()
        if self.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if self.kind == "hnsw":
            graph = faiss.IndexHNSWFlat(self.dim, self.params["m"], faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efSearch = self.params["ef_search"]
            return faiss.IndexIDMap2(graph)
        quantizer = faiss.IndexFlatIP(self.dim)
        cells = min(self.params["nlist"], len(sample))
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, cells, faiss.METRIC_INNER_PRODUCT)
        ivf.train(sample)
        ivf.nprobe = min(self.params["nprobe"], cells)
        return ivf  # faiss's Python wrapper keeps the quantizer alive with it

    def __len__(self) -> int:
        return len(self._live())

    def add(self, embeddings: np.ndarray, ids: list[Any]) -> None:
        """Add rows; an id already in the index is refused (remove it first)."""
        ids = [str(i) for i in ids]
        if len(ids) != len(embeddings):
            raise PolyfuseError(f"{len(embeddings)} embeddings but {len(ids)} ids")
        live = self._live()
        clash = [i for i in ids if i in live]
        if clash or len(set(ids)) != len(ids):
            raise PolyfuseError(f"ids already in the index or repeated: {sorted(set(clash) or ids)[:5]}")
        start = len(self.ids)
        self.ids.extend(ids)
        keys = np.arange(start, start + len(ids), dtype=np.int64)
        self.index.add_with_ids(np.ascontiguousarray(embeddings, dtype=np.float32), keys)

    def _live(self) -> dict[str, int]:
        """Row id -> faiss id of every row still in the index."""
        out = self.removed | self.deleted
        return {row: k for k, row in enumerate(self.ids) if k not in out}

    def remove(self, ids: list[Any]) -> int:
        """Remove rows by id; returns how many were in the index."""
        live = self._live()
        keys = [live[str(i)] for i in ids if str(i) in live]
        if not keys:
            return 0
        if self.kind == "hnsw":
            self.removed |= set(keys)
        else:
            self.index.remove_ids(np.asarray(keys, dtype=np.int64))
            self.deleted |= set(keys)
        return len(keys)

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest rows of each query [Q, D]: (id, cosine similarity), best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        fetch = min(int(self.index.ntotal), k + len(self.removed))
        if fetch <= 0:
            return [[] for _ in queries]
        scores, keys = self.index.search(queries, fetch)
        out = []
        for row_scores, row_keys in zip(scores, keys, strict=True):
            hits = [(self.ids[int(key)], float(s)) for s, key in zip(row_scores, row_keys, strict=True)
                    if key >= 0 and int(key) not in self.removed]  # fmt: skip
            out.append(hits[:k])
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``index.faiss`` and ``index.json`` (kind, parameters, modality, ids, removals)."""
        faiss = _faiss()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / "index.faiss"))
        meta = {
            "format": INDEX_FORMAT,
            "kind": self.kind,
            "dim": self.dim,
            "modality": self.modality,
            "params": self.params,
            "model": self.model,
            "ids": self.ids,
            "removed": sorted(self.removed),
            "deleted": sorted(self.deleted),
        }
        save_json(meta, out / "index.json")
        return out

    @classmethod
    def load(cls, path: str | Path) -> SearchIndex:
        faiss = _faiss()
        folder = Path(path)
        if not (folder / "index.json").is_file():
            raise PolyfuseError(f"{folder} is not a polyfuse index (no index.json)")
        meta = read_versioned(folder / "index.json", INDEX_FORMAT)
        made = cls(meta["kind"], meta["dim"], meta["modality"], meta["params"], meta["ids"])
        made.removed, made.deleted, made.model = set(meta["removed"]), set(meta["deleted"]), meta.get("model")
        made.index = faiss.read_index(str(folder / "index.faiss"))
        if made.kind == "ivf":
            made.index.nprobe = meta["params"]["nprobe"]
        elif made.kind == "hnsw":
            faiss.downcast_index(made.index.index).hnsw.efSearch = meta["params"]["ef_search"]
        return made


def row_ids(frame: pd.DataFrame, id_column: str | None) -> list[str]:
    """How rows are named in an index: the ``id_column``'s values, else the table's index."""
    if id_column is None:
        return [str(i) for i in frame.index]
    if id_column not in frame.columns:
        raise PolyfuseError(f"no column {id_column!r} to name rows by")
    return [str(v) for v in frame[id_column]]
