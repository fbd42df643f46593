"""How similar two modalities' embeddings are on the same rows: linear CKA and mean CCA.

Linear CKA from Kornblith, Norouzi, Lee & Hinton, 2019, "Similarity of Neural Network
Representations Revisited": invariant to orthogonal transforms and isotropic scaling, 1 for a
representation with itself. Mean canonical correlation as in SVCCA (Raghu, Gilmer, Yosinski &
Sohl-Dickstein, 2017): each side is first reduced to its top principal directions, because CCA on
more dimensions than the rows can support finds spurious perfect correlations.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MIN_ROWS = 3  # fewer shared rows give no meaningful similarity (NaN)


def _centered(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows, x [N, D1] and y [N, D2]; in [0, 1]."""
    x, y = _centered(x), _centered(y)
    if len(x) != len(y):
        raise ValueError(f"x and y need the same rows, got {len(x)} and {len(y)}")
    cross = np.linalg.norm(y.T @ x) ** 2  # ||Y^T X||_F^2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


def _top_directions(x: np.ndarray, k: int) -> np.ndarray:
    """x [N, D] centred, projected on its top-k principal directions -> [N, k'] (k' <= k)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    keep = min(k, int((s > s[0] * 1e-8).sum())) if len(s) and s[0] > 0 else 0
    return u[:, :keep] * s[:keep]


def mean_cca(x: np.ndarray, y: np.ndarray, components: int = 10, reg: float = 1e-4) -> float:
    """Mean of the canonical correlations between x [N, D1] and y [N, D2].

    Args:
        x: First representation.
        y: Second representation of the same rows.
        components: Principal directions kept per side before CCA (also capped at N // 5).
        reg: Ridge added to each covariance, relative to its mean variance.
    """
    x, y = _centered(x), _centered(y)
    k = max(1, min(components, len(x) // 5))
    a, b = _top_directions(x, k), _top_directions(y, k)
    if a.shape[1] == 0 or b.shape[1] == 0:
        return float("nan")
    caa, cbb, cab = a.T @ a, b.T @ b, a.T @ b
    wa = _inverse_sqrt(caa + reg * np.trace(caa) / len(caa) * np.eye(len(caa)))
    wb = _inverse_sqrt(cbb + reg * np.trace(cbb) / len(cbb) * np.eye(len(cbb)))
    rho = np.linalg.svd(wa @ cab @ wb, compute_uv=False)
    return float(np.clip(rho, 0.0, 1.0).mean())


def _inverse_sqrt(c: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(c)
    return (vectors / np.sqrt(np.clip(values, 1e-12, None))) @ vectors.T  # type: ignore[no-any-return]


def similarity_matrices(
    embeddings: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray]
) -> dict[str, list[list[float]] | list[str]]:
    """M x M linear CKA and mean CCA, each pair on the rows where both modalities are present.

    Args:
        embeddings: Modality -> [N, D_m] on the same N rows.
        present: Modality -> bool [N].
    """
    names = list(embeddings)
    cka = np.full((len(names), len(names)), np.nan)
    cca = np.full_like(cka, np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names[i:], start=i):
            rows = np.asarray(present[a], bool) & np.asarray(present[b], bool)
            if rows.sum() < MIN_ROWS:
                continue
            cka[i, j] = cka[j, i] = linear_cka(embeddings[a][rows], embeddings[b][rows])
            cca[i, j] = cca[j, i] = mean_cca(embeddings[a][rows], embeddings[b][rows])
    return {"modalities": names, "cka": cka.tolist(), "cca": cca.tolist()}
