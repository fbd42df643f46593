"""scenes: pictures of 1-4 coloured shapes with captions, questions and spoken captions.

The data behind cross-modal work (retrieval, zero-shot classification, captioning, question
answering), generated offline from a seed like digits-av. Each 64x64 picture holds one large shape
and up to three small ones, every shape of a different kind and colour, at non-overlapping places
on a light, slightly noisy background. Each row has

* ``caption``: the shapes from left to right, in one of several templates and paraphrases
  ("a large red circle and a small blue square", "there is a small green cross left of ...");
* ``question`` / ``answer`` / ``question_type``: one question about the picture in the manner of
  Sort-of-CLEVR (Santoro et al., NeurIPS 2017): attribute questions (colour, shape, size, count,
  existence) and relational ones (left of / above, the shape nearest to or farthest from another);
* ``audio``: the caption spoken by espeak-ng (voices held out as in digits-av: some val / test
  voices are never heard in training), 16 kHz WAV;
* ``content``: the shapes left to right without the phrasing (two pictures with the same content
  fit the same captions; retrieval counts either as a match);
* ``shape`` and ``colour`` of the large shape (the classification labels; ``shape`` is what
  zero-shot classification reads), ``count``, and ``split``.

A question is only asked when its answer is defined (relations need two shapes; the shapes of a
picture differ in kind and in colour, so "the red shape" names one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.datasets.base import DatasetInfo
from polyfuse.registry import DATASETS

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (150, 60, 190),
    "orange": (240, 130, 20),
}
SIZES = {"small": 5, "large": 9}  # half-widths in pixels: a large shape fills its cell of the 3x3 grid
COUNT_WORDS = ("zero", "one", "two", "three", "four")
SIDE = 64  # pixels
DRAW_SCALE = 4  # draw at 4x and downsample: smooth edges
SPLITS = {"train": 0.70, "val": 0.15, "test": 0.15}
ROWS = 10_000
# The table's columns after the image and audio paths (the rest of the plan is metadata).
COLUMNS = ("caption", "content", "question", "answer", "question_type", "shape", "colour", "count", "split")
TABLE = "scenes.csv"
META = "scenes.meta.csv"  # per-row objects and voice, not model inputs
# Spoken captions: espeak-ng voices split as in digits-av (some val / test voices never trained on).
RATES = (150, 175, 200)
PITCHES = (30, 50, 70)
HELD_OUT_SHARE = 0.5


@dataclass(frozen=True)
class Shape:
    """One object of a picture: its kind, colour, size and centre (pixels on the 64x64 canvas)."""

    kind: str
    colour: str
    size: str
    x: int
    y: int

    def name(self, with_size: bool = True) -> str:
        return f"{self.size} {self.colour} {self.kind}" if with_size else f"{self.colour} {self.kind}"


def place(rng: np.random.Generator) -> list[Shape]:
    """1-4 shapes, each of another kind and colour, the first large and the others small, on cells of
    a 3x3 grid (so none overlap), with jitter; returned left to right."""
    count = int(rng.integers(1, 5))
    kinds = rng.choice(SHAPES, size=count, replace=False)
    colours = rng.choice(list(COLOURS), size=count, replace=False)
    cells = rng.choice(9, size=count, replace=False)
    cell = SIDE / 3
    shapes = []
    for k in range(count):
        size = "large" if k == 0 else "small"
        room = int(cell / 2 - SIZES[size]) - 1  # jitter that keeps the shape inside its cell
        jitter = rng.integers(-max(room, 0), max(room, 0) + 1, size=2) if room > 0 else np.zeros(2, int)
        cx = int(cell * (cells[k] % 3) + cell / 2 + jitter[0])
        cy = int(cell * (cells[k] // 3) + cell / 2 + jitter[1])
        shapes.append(Shape(str(kinds[k]), str(colours[k]), size, cx, cy))
    return sorted(shapes, key=lambda s: (s.x, s.y))


def render(shapes: list[Shape], rng: np.random.Generator) -> np.ndarray:
    """The picture: uint8 [64, 64, 3]."""
    from PIL import Image, ImageDraw

    big = SIDE * DRAW_SCALE
    background = tuple(int(v) for v in rng.integers(215, 245, size=3))
    canvas = Image.new("RGB", (big, big), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(canvas)
    for s in shapes:
        _draw(draw, s, DRAW_SCALE)
    small = canvas.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float32) + rng.normal(0, 6, (SIDE, SIDE, 3))
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def _draw(draw: Any, s: Shape, scale: int) -> None:
    r, x, y, fill = SIZES[s.size] * scale, s.x * scale, s.y * scale, COLOURS[s.colour]
    if s.kind == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif s.kind == "square":
        side = int(r * 0.88)  # the same area as the circle, about
        draw.rectangle([x - side, y - side, x + side, y + side], fill=fill)
    elif s.kind == "triangle":
        draw.polygon([(x, y - r), (x - r, y + int(r * 0.8)), (x + r, y + int(r * 0.8))], fill=fill)
    else:  # cross
        arm = max(1, r // 3)
        draw.rectangle([x - r, y - arm, x + r, y + arm], fill=fill)
        draw.rectangle([x - arm, y - r, x + arm, y + r], fill=fill)


# --- captions -------------------------------------------------------------------------------------


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def caption(shapes: list[Shape], rng: np.random.Generator) -> str:
    """One of several templates over the shapes, left to right."""
    names = [_article(s.name()) for s in shapes]
    templates = [
        lambda: _listing(names),
        lambda: "there is " + _listing(names),
        lambda: "a picture of " + _listing(names),
        lambda: f"{COUNT_WORDS[len(shapes)]} shape{'s' if len(shapes) > 1 else ''}: " + _listing(names),
    ]
    if len(shapes) >= 2:
        templates.append(lambda: " left of ".join(names))
        templates.append(lambda: "from left to right, " + _listing(names))
    return str(templates[int(rng.integers(len(templates)))]())


def content(shapes: list[Shape]) -> str:
    """What every caption of the picture says, whatever its phrasing: the shapes left to right
    (``"large red circle; small blue square"``). Pictures with the same content match the same
    captions: retrieval counts them as relevant to each other (``relevant_by="content"``)."""
    return "; ".join(s.name() for s in shapes)


# --- questions ------------------------------------------------------------------------------------

ATTRIBUTE = "attribute"
RELATIONAL = "relational"
CLEAR = 8  # pixels: how plain a relation must be to be asked (shapes of two cells always differ by one)


def question(shapes: list[Shape], rng: np.random.Generator) -> tuple[str, str, str]:
    """(question, answer, type): relational questions on half the pictures with two shapes or more."""
    if len(shapes) >= 2 and rng.random() < 0.5:
        return (*_relational(shapes, rng), RELATIONAL)
    return (*_attribute(shapes, rng), ATTRIBUTE)


def _attribute(shapes: list[Shape], rng: np.random.Generator) -> tuple[str, str]:
    s = shapes[int(rng.integers(len(shapes)))]
    kind = int(rng.integers(5))
    if kind == 0:
        return f"what colour is the {s.kind}?", s.colour
    if kind == 1:
        return f"what shape is the {s.colour} object?", s.kind
    if kind == 2:
        return f"what size is the {s.colour} {s.kind}?", s.size
    if kind == 3:
        return "how many shapes are there?", COUNT_WORDS[len(shapes)]
    if rng.random() < 0.5:  # existence, asked of a present shape or of an absent combination
        return f"is there {_article(s.name(False))}?", "yes"
    present = {(t.colour, t.kind) for t in shapes}
    absent = [(c, k) for c in COLOURS for k in SHAPES if (c, k) not in present]
    colour, shape = absent[int(rng.integers(len(absent)))]
    return f"is there {_article(colour + ' ' + shape)}?", "no"


def _relational(shapes: list[Shape], rng: np.random.Generator) -> tuple[str, str]:
    """A question on how two shapes lie, drawn among those a glance answers: left of / above only
    between shapes ``CLEAR`` pixels apart that way, nearest / farthest only when the distances differ
    by that much."""
    i, j = rng.choice(len(shapes), size=2, replace=False)
    a, b = shapes[int(i)], shapes[int(j)]
    asked = []
    if abs(a.x - b.x) >= CLEAR:
        asked.append((f"is the {a.name(False)} left of the {b.name(False)}?", "yes" if a.x < b.x else "no"))
    if abs(a.y - b.y) >= CLEAR:
        asked.append((f"is the {a.name(False)} above the {b.name(False)}?", "yes" if a.y < b.y else "no"))
    others = [t for t in shapes if t is not a]
    distance = np.hypot([t.x - a.x for t in others], [t.y - a.y for t in others])
    if len(others) > 1 and np.diff(np.sort(distance)).min() >= CLEAR:
        nearest, farthest = others[int(np.argmin(distance))], others[int(np.argmax(distance))]
        asked.append((f"what shape is nearest to the {a.colour} shape?", nearest.kind))
        asked.append((f"what shape is farthest from the {a.colour} shape?", farthest.kind))
    return asked[int(rng.integers(len(asked)))]


def questions(table: str | Path, per_picture: int = 10, seed: int = 0) -> pd.DataFrame:
    """Many questions per picture of a built scenes table (its ``scenes.meta.csv`` beside it): one row
    per (picture, question) with ``image``, ``question``, ``answer``, ``question_type`` and the
    picture's ``split``, up to ``per_picture`` distinct questions drawn per picture (fewer when the
    picture allows fewer), in the manner of Sort-of-CLEVR's 20 questions per image. Its image paths
    are relative to the table's folder, like the table's own."""
    folder = Path(table).parent
    frame = pd.read_csv(table, keep_default_na=False)
    meta = pd.read_csv(folder / META, keep_default_na=False)
    records = []
    for i, (image, split, objects) in enumerate(
        zip(frame["image"], frame["split"], meta["objects"], strict=True)
    ):
        shapes = [Shape(**o) for o in json.loads(objects)]
        rng = np.random.default_rng([seed, 2, i])
        asked: dict[str, tuple[str, str]] = {}
        for _ in range(4 * per_picture):  # draws until enough distinct questions (or the picture runs out)
            q, answer, qtype = question(shapes, rng)
            asked.setdefault(q, (answer, qtype))
            if len(asked) == per_picture:
                break
        records += [
            {"image": image, "question": q, "answer": a, "question_type": t, "split": split}
            for q, (a, t) in asked.items()
        ]
    return pd.DataFrame(records)


# --- the table ------------------------------------------------------------------------------------


def plan(seed: int, rows: int) -> pd.DataFrame:
    """Everything about each row but its pixels and sound: shapes, texts, split, voice."""
    from polyfuse.data.datasets.digits_av import voices

    rng = np.random.default_rng([seed, 0])
    split = rng.choice(list(SPLITS), size=rows, p=list(SPLITS.values()))
    pool = voices(seed)
    records = []
    for i in range(rows):
        row = np.random.default_rng([seed, 1, i])
        shapes = place(row)
        q, answer, qtype = question(shapes, row)
        held_out = split[i] != "train" and row.random() < HELD_OUT_SHARE
        speakers = pool[str(split[i])] if held_out else pool["train"]
        records.append(
            {
                "caption": caption(shapes, row),
                "content": content(shapes),
                "question": q,
                "answer": answer,
                "question_type": qtype,
                "shape": shapes_by_size(shapes)[0].kind,
                "colour": shapes_by_size(shapes)[0].colour,
                "count": len(shapes),
                "split": str(split[i]),
                "objects": json.dumps([asdict(s) for s in shapes]),
                "voice": speakers[int(row.integers(len(speakers)))],
                "rate": int(row.choice(RATES)),
                "pitch": int(row.choice(PITCHES)),
                "row_seed": int(row.integers(2**31)),
            }
        )
    return pd.DataFrame(records)


def shapes_by_size(shapes: list[Shape]) -> list[Shape]:
    """The large shape first."""
    return sorted(shapes, key=lambda s: s.size != "large")


def spoken(speech: np.ndarray, source_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthesised caption at 16 kHz, trimmed, with 0.1-0.3 s of quiet around it and faint noise (int16)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    from polyfuse.data.datasets.corrupt import SAMPLE_RATE

    ratio = Fraction(SAMPLE_RATE, source_rate)
    voice = resample_poly(speech.astype(np.float64) / 32768.0, ratio.numerator, ratio.denominator)
    loud = np.flatnonzero(np.abs(voice) > 1e-3)
    voice = voice[loud[0] : loud[-1] + 1] if len(loud) else voice
    voice *= rng.uniform(0.4, 0.8) / (np.abs(voice).max() + 1e-9)
    pad = rng.integers(int(0.1 * SAMPLE_RATE), int(0.3 * SAMPLE_RATE), size=2)
    clip = np.concatenate([np.zeros(pad[0]), voice, np.zeros(pad[1])])
    clip += rng.normal(0, 0.003, len(clip))
    return (np.clip(clip, -1, 1) * 32767).round().astype(np.int16)


def build(out: Path, seed: int = 0, limit: int | None = None, workers: int = 2) -> Path:
    """Generate scenes (``limit`` rows, default 10,000) and write it to ``out``; returns the table's path."""
    import soundfile as sf
    from PIL import Image

    from polyfuse.data.datasets.corrupt import SAMPLE_RATE
    from polyfuse.data.datasets.speech import Utterance, synthesise

    out = Path(out)
    meta = plan(seed, limit or ROWS)
    utterances = [Utterance(r.caption, r.voice, r.rate, r.pitch) for r in meta.itertuples()]
    source_rate, clips = synthesise(utterances, seed=seed, workers=workers)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    records = []
    for k, (r, utt) in enumerate(zip(meta.itertuples(), utterances, strict=True)):
        rng = np.random.default_rng(r.row_seed)
        shapes = [Shape(**o) for o in json.loads(r.objects)]
        image, audio = f"images/{k:05d}.png", f"audio/{k:05d}.wav"
        Image.fromarray(render(shapes, rng), mode="RGB").save(out / image)
        sf.write(out / audio, spoken(clips[utt], source_rate, rng), SAMPLE_RATE, subtype="PCM_16")
        records.append({"image": image, "audio": audio, **{c: getattr(r, c) for c in COLUMNS}})
    pd.DataFrame(records).to_csv(out / TABLE, index=False)
    meta.drop(columns=["row_seed"]).to_csv(out / META, index_label="row")
    return out / TABLE


INFO: Any = DATASETS.register("scenes")(
    DatasetInfo(
        name="scenes",
        description=(
            "Pictures of 1-4 coloured shapes with a caption, a question and its answer, and the caption "
            "spoken: for retrieval, zero-shot classification, captioning and question answering."
        ),
        label="shape",
        split="split",
        rows=ROWS,
        modalities={"image": "image", "audio": "audio", "caption": "text", "question": "text"},
        version=1,
        builder=build,
    )
)
