"""The pure parts of explain: exact Shapley games, CKA / CCA, noise and drop masks, compare subsets."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polyfuse.eval.correlation import linear_cka, mean_cca, similarity_matrices
from polyfuse.eval.explain import write_json
from polyfuse.eval.robustness import drop_mask, noisy
from polyfuse.eval.shapley import coalitions, exact_shapley, shapley_from_values, shapley_weight
from polyfuse.eval.subsets import constant_metric, subset_shapley

PLAYERS = ["image", "audio", "text"]


def test_coalitions_enumerates_every_subset_once():
    every = coalitions(PLAYERS)
    assert len(every) == 8 and len(set(every)) == 8
    assert every[0] == frozenset() and every[-1] == frozenset(PLAYERS)


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_shapley_weights_of_one_player_sum_to_one(m):
    # Over all coalitions of the other m - 1 players, player i's weights sum to 1.
    total = sum(shapley_weight(size, m) * len(list(combinations(range(m - 1), size))) for size in range(m))
    assert total == pytest.approx(1.0, abs=1e-12)


def test_additive_game_gives_each_player_its_own_worth():
    worth = {"image": 0.3, "audio": -0.1, "text": 0.05}
    values, _ = exact_shapley(lambda s: 0.2 + sum(worth[p] for p in s), PLAYERS)
    for p in PLAYERS:
        assert values[p] == pytest.approx(worth[p], abs=1e-12)


def test_symmetric_game_splits_the_gain_equally():
    f = [0.1, 0.5, 0.6, 0.9]  # value by coalition size
    values, _ = exact_shapley(lambda s: f[len(s)], PLAYERS)
    for p in PLAYERS:
        assert values[p] == pytest.approx((0.9 - 0.1) / 3, abs=1e-12)


def test_a_known_asymmetric_game():
    # v(S) = 1 when S holds "image" and at least one other player: image 2/3, audio = text = 1/6.
    def v(s: frozenset[str]) -> float:
        return float("image" in s and len(s) >= 2)

    values, table = exact_shapley(v, PLAYERS)
    assert values["image"] == pytest.approx(2 / 3, abs=1e-12)
    assert values["audio"] == pytest.approx(1 / 6, abs=1e-12)
    assert values["text"] == pytest.approx(1 / 6, abs=1e-12)
    assert len(table) == 8


def test_efficiency_on_a_random_game_and_per_sample_arrays():
    rng = np.random.default_rng(0)
    players = ["a", "b", "c", "d"]
    game = {c: rng.normal(size=5) for c in coalitions(players)}  # 5 samples per coalition
    values = shapley_from_values(game, players)
    total = sum(values.values())
    np.testing.assert_allclose(total, game[frozenset(players)] - game[frozenset()], atol=1e-12)
    scalar = shapley_from_values({c: float(v[2]) for c, v in game.items()}, players)
    for p in players:
        assert scalar[p] == pytest.approx(values[p][2], abs=1e-12)


def test_missing_coalitions_and_duplicate_players_are_refused():
    with pytest.raises(ValueError, match="missing"):
        shapley_from_values({frozenset(): 0.0, frozenset({"a"}): 1.0}, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        exact_shapley(lambda s: 0.0, ["a", "a"])


def test_cka_is_one_with_itself_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12))
    y = x @ rng.normal(size=(12, 8)) + 0.5 * rng.normal(size=(200, 8))
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))  # orthogonal
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x @ q, x) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x @ q * 7.5, y) == pytest.approx(linear_cka(x, y), abs=1e-10)
    assert linear_cka(3.0 * x + 4.0, y) == pytest.approx(linear_cka(x, y), abs=1e-10)  # shift: centred
    independent = rng.normal(size=(200, 8))
    assert linear_cka(x, independent) < 0.15 < linear_cka(x, y)


def test_mean_cca_finds_a_shared_linear_signal():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 3))
    x = z @ rng.normal(size=(3, 10)) + 0.05 * rng.normal(size=(400, 10))
    y = z @ rng.normal(size=(3, 6)) + 0.05 * rng.normal(size=(400, 6))
    assert mean_cca(x, x, components=3) == pytest.approx(1.0, abs=1e-3)
    assert mean_cca(x, y, components=3) > 0.95
    assert mean_cca(x, rng.normal(size=(400, 6)), components=3) < 0.2


def test_similarity_matrices_use_shared_rows_and_give_nan_without_them():
    rng = np.random.default_rng(2)
    emb = {"a": rng.normal(size=(20, 4)), "b": rng.normal(size=(20, 3))}
    present = {"a": np.arange(20) < 10, "b": np.arange(20) >= 9}  # one shared row only
    out = similarity_matrices(emb, present)
    assert out["modalities"] == ["a", "b"]
    assert out["cka"][0][0] == pytest.approx(1.0) and out["cka"][1][1] == pytest.approx(1.0)
    assert np.isnan(out["cka"][0][1]) and np.isnan(out["cca"][1][0])


def test_drop_mask_masks_the_first_share_of_the_order():
    present = torch.tensor([True, True, False, True])
    order = np.array([3, 2, 0, 1])
    assert drop_mask(present, 0.0, order).tolist() == [True, True, False, True]
    assert drop_mask(present, 0.5, order).tolist() == [True, True, False, False]
    assert drop_mask(present, 1.0, order).tolist() == [False, False, False, False]


def test_noise_keeps_dtype_leaves_absent_rows_and_skips_token_ids():
    gen = torch.Generator().manual_seed(0)
    images = torch.full((4, 1, 3, 3), 100, dtype=torch.uint8)
    images[0] = 0
    images[1] = 200  # std > 0
    present = torch.tensor([True, True, True, False])
    out = noisy(images, 1.0, present, gen)
    assert out is not None and out.dtype == torch.uint8
    assert torch.equal(out[3], images[3])  # absent row untouched
    assert not torch.equal(out[:3], images[:3])
    assert noisy(images, 0.0, present, gen) is not None and torch.equal(
        noisy(images, 0.0, present, gen), images
    )
    assert noisy(torch.ones(4, 5, dtype=torch.long), 1.0, present, gen) is None
    assert noisy(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 1.0, present[:2], gen) is None  # 0/1 flags


def test_constant_metric_is_the_majority_rate_for_accuracy():
    y = np.array([0, 1, 1, 2, 1, 0])
    assert constant_metric("multiclass", "accuracy", y, 3) == pytest.approx(0.5)
    assert constant_metric("binary", "accuracy", np.array([1, 1, 0, 1]), 2) == pytest.approx(0.75)
    assert constant_metric("regression", "r2", np.array([1.0, 2.0, 3.0]), 0) == pytest.approx(0.0)


def _compare_dir(folder: Path, scores: dict[str, float]) -> Path:
    rows = []
    for subset, score in scores.items():
        rows.append({"modalities": subset, "fusion": "concat", "accuracy_mean": score, "accuracy_std": 0.0})
        rows.append(
            {"modalities": subset, "fusion": "late", "accuracy_mean": score - 0.1, "accuracy_std": 0.0}
        )
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    info = {"metric": "accuracy", "higher_is_better": True, "modalities": ["audio", "image"]}
    (folder / "compare.json").write_text(json.dumps(info))
    return folder


def test_subset_shapley_reads_the_best_fusion_per_subset(tmp_path):
    folder = _compare_dir(tmp_path, {"audio": 0.6, "image": 0.7, "audio+image": 0.9})
    y = np.array([0, 0, 1, 2])  # majority rate 0.5 = v(empty)
    out = subset_shapley(folder, "multiclass", y, 3)
    # Two players: phi_a = ((v(a) - v0) + (v(ab) - v(b))) / 2
    assert out["subsets"]["audio"] == pytest.approx(((0.6 - 0.5) + (0.9 - 0.7)) / 2)
    assert out["subsets"]["image"] == pytest.approx(((0.7 - 0.5) + (0.9 - 0.6)) / 2)
    assert sum(out["subsets"].values()) == pytest.approx(0.9 - 0.5, abs=1e-12)
    assert out["subsets_empty"]["metric"] == pytest.approx(0.5)
    assert {c["fusion"] for c in out["subsets_coalitions"] if c["modalities"]} == {"concat"}


def test_subset_shapley_from_a_leaderboard_and_with_a_missing_subset(tmp_path):
    rows = [
        {
            "run_id": i,
            "modalities": s,
            "fusion": "concat",
            "status": "ok",
            "metric": "accuracy",
            "test_accuracy": a,
        }
        for i, (s, a) in enumerate([("audio", 0.5), ("audio", 0.7), ("image", 0.8), ("audio+image", 0.95)])
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "leaderboard.csv", index=False)
    out = subset_shapley(tmp_path, "multiclass", np.array([0, 1, 1, 1]), 2)
    assert out["subsets"]["audio"] == pytest.approx(((0.6 - 0.75) + (0.95 - 0.8)) / 2)  # mean over seeds
    pd.DataFrame(rows[:3]).to_csv(tmp_path / "leaderboard.csv", index=False)
    assert "subsets" not in subset_shapley(tmp_path, "multiclass", np.array([0, 1]), 2)
    assert "audio" in subset_shapley(tmp_path, "multiclass", np.array([0, 1]), 2)["subsets_note"]


def test_json_is_strict(tmp_path):
    write_json(
        tmp_path / "x.json", {"a": float("nan"), "b": [np.float32(0.5), np.int64(3)], "c": {1: np.inf}}
    )
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [0.5, 3], "c": {"1": None}}
