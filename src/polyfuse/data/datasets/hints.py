"""Short free-text notes that narrow a digit down without naming it.

A note states one or two true properties of the digit (parity, size, primality), phrased in
many ways, or says nothing useful. No property singles out a digit, so text alone stays weak
(about 0.2 accuracy) while still helping a fused model when the image or the audio is poor.
"""

from __future__ import annotations

import numpy as np

PRIMES = frozenset({2, 3, 5, 7})

PHRASES: dict[str, tuple[str, ...]] = {
    "even": (
        "an even number", "it's even", "even", "divisible by two", "the number is even",
        "should be even", "even digit, I think", "looks like an even one", "an even value",
    ),
    "odd": (
        "an odd number", "it's odd", "odd", "not divisible by two", "the number is odd",
        "should be odd", "odd digit, I think", "looks like an odd one", "an odd value",
    ),
    "small": (
        "a small digit", "less than five", "below five", "under 5", "a low number",
        "smaller than five", "one of the low ones", "somewhere from zero to four",
    ),
    "large": (
        "bigger than four", "five or more", "a large digit", "at least 5", "a high number",
        "above four", "one of the high ones", "somewhere from five to nine",
    ),
    "prime": ("a prime", "it's a prime number", "prime", "the digit is prime"),
    "composite": ("not a prime", "it isn't prime", "no prime", "definitely not prime"),
    "filler": (
        "no idea", "hard to read", "scanned at the front desk", "from the morning batch",
        "see attached", "checked twice", "?", "n/a",
    ),
}  # fmt: skip

JOINERS = ("{a} and {b}", "{a}, {b}", "{a}; also {b}", "{a} - {b}")

# How often each kind of note appears; "" means an empty cell.
KIND_WEIGHTS: dict[str, float] = {
    "parity": 0.33,
    "size": 0.28,
    "prime": 0.09,
    "parity+size": 0.10,
    "filler": 0.08,
    "": 0.12,
}


def _property(kind: str, digit: int) -> str:
    """The true value of one property for ``digit``, as a key of ``PHRASES``."""
    if kind == "parity":
        return "even" if digit % 2 == 0 else "odd"
    if kind == "size":
        return "small" if digit < 5 else "large"
    if kind == "prime":
        return "prime" if digit in PRIMES else "composite"
    raise ValueError(f"unknown property {kind!r}")


def _phrase(key: str, rng: np.random.Generator) -> str:
    options = PHRASES[key]
    return options[int(rng.integers(len(options)))]


def _style(text: str, rng: np.random.Generator) -> str:
    """Vary capitalisation and end punctuation a little, as people do."""
    if rng.random() < 0.3:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.2:
        text += rng.choice([".", "!", "..."])
    return text


def note_for(digit: int, kind: str, rng: np.random.Generator) -> str:
    """A note of the given kind (a key of ``KIND_WEIGHTS``) that is true of ``digit``."""
    if kind == "":
        return ""
    if kind == "filler":
        return _style(_phrase("filler", rng), rng)
    parts = [_phrase(_property(k, digit), rng) for k in kind.split("+")]
    if len(parts) == 1:
        return _style(parts[0], rng)
    joiner = JOINERS[int(rng.integers(len(JOINERS)))]
    return _style(joiner.format(a=parts[0], b=parts[1]), rng)


def draw_kind(rng: np.random.Generator) -> str:
    """Draw a kind of note according to ``KIND_WEIGHTS``."""
    kinds = list(KIND_WEIGHTS)
    weights = np.array(list(KIND_WEIGHTS.values()))
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
