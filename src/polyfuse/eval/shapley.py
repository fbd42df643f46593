"""Exact Shapley values of modalities (Shapley, 1953, "A Value for n-Person Games").

With M players the value of every one of the 2^M coalitions is computed once, then each player
gets the weighted mean of its marginal contributions:

    phi_i = sum over S not containing i of |S|! (M - |S| - 1)! / M! * (v(S + i) - v(S))

The values satisfy efficiency exactly: sum_i phi_i = v(all) - v(none). A value may be a float
or an array (one game per sample, computed together).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from math import factorial
from typing import TypeVar

import numpy as np

MAX_PLAYERS = 12  # 4,096 coalitions; beyond that exact enumeration stops being cheap
Value = TypeVar("Value", float, np.ndarray)


def coalitions(players: Sequence[str]) -> list[frozenset[str]]:
    """All 2^M subsets of ``players``, smallest first (the empty set first, everyone last)."""
    return [frozenset(c) for size in range(len(players) + 1) for c in combinations(players, size)]


def shapley_weight(size: int, num_players: int) -> float:
    """Weight of a coalition of ``size`` players (not counting i) in player i's Shapley value."""
    return factorial(size) * factorial(num_players - size - 1) / factorial(num_players)


def shapley_from_values(value: Mapping[frozenset[str], Value], players: Sequence[str]) -> dict[str, Value]:
    """Shapley values from the value of every coalition.

    Args:
        value: Coalition -> its value (float, or an array with one entry per sample).
        players: The players; ``value`` must hold every subset of them.
    """
    missing = [sorted(c) for c in coalitions(players) if c not in value]
    if missing:
        raise ValueError(f"values of {len(missing)} coalitions are missing, e.g. {missing[0]}")
    m = len(players)
    out: dict[str, Value] = {}
    for player in players:
        others = [p for p in players if p != player]
        total: Value = 0.0 * value[frozenset()]
        for subset in coalitions(others):
            total = total + shapley_weight(len(subset), m) * (value[subset | {player}] - value[subset])
        out[player] = total
    return out


def exact_shapley(
    value_fn: Callable[[frozenset[str]], Value], players: Sequence[str]
) -> tuple[dict[str, Value], dict[frozenset[str], Value]]:
    """Shapley values of a game given as a function, and the value of every coalition.

    ``value_fn`` is called once per coalition (2^M calls).
    """
    if len(players) > MAX_PLAYERS:
        raise ValueError(f"exact Shapley values enumerate 2^M coalitions; M={len(players)} > {MAX_PLAYERS}")
    if len(set(players)) != len(players):
        raise ValueError(f"players must be distinct, got {list(players)}")
    values = {c: value_fn(c) for c in coalitions(players)}
    return shapley_from_values(values, players), values
