"""scenes: every caption, question and answer agrees with the shapes drawn; builds are reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from polyfuse.cli import app
from polyfuse.data.datasets import list_datasets, scenes
from polyfuse.data.datasets.scenes import CLEAR, COLOURS, COUNT_WORDS, SHAPES, SIDE, SIZES, Shape

ROWS = 40
SCENES = 400  # planned (not rendered) pictures checked for consistency


def _scenes(n: int = SCENES) -> list[tuple[list[Shape], np.random.Generator]]:
    out = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        out.append((scenes.place(rng), rng))
    return out


def test_list_datasets_describes_scenes() -> None:
    (info,) = [d for d in list_datasets() if d["name"] == "scenes"]
    assert info["label"] == "shape" and info["rows"] >= 10_000
    assert info["modalities"] == ["audio", "image", "text"]


def test_shapes_differ_in_kind_and_colour_and_never_overlap() -> None:
    for shapes, _ in _scenes():
        assert 1 <= len(shapes) <= 4 and [s.size for s in scenes.shapes_by_size(shapes)][0] == "large"
        assert len({s.kind for s in shapes}) == len({s.colour for s in shapes}) == len(shapes)
        assert [s.x for s in shapes] == sorted(s.x for s in shapes)  # left to right
        for s in shapes:
            assert (
                SIZES[s.size] <= s.x <= SIDE - SIZES[s.size] and SIZES[s.size] <= s.y <= SIDE - SIZES[s.size]
            )
        for k, a in enumerate(shapes):
            for b in shapes[k + 1 :]:  # bounding boxes apart
                gap = max(abs(a.x - b.x), abs(a.y - b.y))
                assert gap > SIZES[a.size] + SIZES[b.size]


def test_caption_names_every_shape_left_to_right() -> None:
    for shapes, rng in _scenes():
        text = scenes.caption(shapes, rng)
        places = [text.index(f"{s.size} {s.colour} {s.kind}") for s in shapes]
        assert places == sorted(places)


def _answer(shapes: list[Shape], question: str) -> str:
    """The answer recomputed from the geometry, by reading the question back."""
    named = {f"{s.colour} {s.kind}": s for s in shapes}
    by_colour = {s.colour: s for s in shapes}
    words = question.rstrip("?").split()
    if question.startswith("what colour is the"):
        return next(s.colour for s in shapes if s.kind == words[-1])
    if question.startswith("what shape is the"):
        return by_colour[words[4]].kind
    if question.startswith("what size is the"):
        return named[" ".join(words[-2:])].size
    if question.startswith("how many"):
        return COUNT_WORDS[len(shapes)]
    if question.startswith("is there"):
        return "yes" if " ".join(words[-2:]) in named else "no"
    if question.startswith("is the"):
        a, relation, b = named[" ".join(words[2:4])], words[4], named[" ".join(words[-2:])]
        delta = b.x - a.x if relation == "left" else b.y - a.y
        assert abs(delta) >= CLEAR  # plain to see
        return "yes" if delta > 0 else "no"
    a = by_colour[words[-2]]  # nearest to / farthest from the <colour> shape
    others = [s for s in shapes if s is not a]
    distance = [np.hypot(s.x - a.x, s.y - a.y) for s in others]
    assert np.diff(np.sort(distance)).min() >= CLEAR
    pick = np.argmin(distance) if "nearest" in words else np.argmax(distance)
    return others[int(pick)].kind


def test_every_answer_follows_from_the_picture() -> None:
    kinds = {"attribute": 0, "relational": 0}
    for shapes, rng in _scenes():
        question, answer, kind = scenes.question(shapes, rng)
        assert _answer(shapes, question) == answer, question
        kinds[kind] += 1
        assert kind == "attribute" or len(shapes) >= 2
    assert min(kinds.values()) > SCENES // 5  # both kinds are common


def test_rendered_picture_shows_each_shape_in_its_colour() -> None:
    for shapes, rng in _scenes(30):
        pixels = scenes.render(shapes, rng).astype(int)
        assert pixels.shape == (SIDE, SIDE, 3)
        for s in shapes:  # the centre pixel is the shape's colour (noise std 6)
            assert np.abs(pixels[s.y, s.x] - np.array(COLOURS[s.colour])).max() < 40, s


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("espeakng_loader")
    from polyfuse.data.datasets import build_dataset

    return build_dataset("scenes", out=tmp_path_factory.mktemp("scenes"), limit=ROWS)


def test_table_files_and_metadata(built: Path) -> None:
    import soundfile as sf
    from PIL import Image

    frame = pd.read_csv(built, keep_default_na=False)
    assert list(frame.columns) == [
        "image", "audio", "caption", "content", "question", "answer", "question_type",
        "shape", "colour", "count", "split",
    ]  # fmt: skip
    assert len(frame) == ROWS and set(frame.split) == {"train", "val", "test"}
    assert set(frame["shape"]) <= set(SHAPES) and set(frame["colour"]) <= set(COLOURS)
    meta = pd.read_csv(built.parent / scenes.META)
    for row, objects in zip(frame.itertuples(), meta.objects, strict=True):
        shapes = [Shape(**o) for o in json.loads(objects)]
        assert _answer(shapes, row.question) == row.answer and row.count == len(shapes)
        assert row.shape == scenes.shapes_by_size(shapes)[0].kind
        assert row.content == "; ".join(f"{s.size} {s.colour} {s.kind}" for s in shapes)
    with Image.open(built.parent / frame.image[0]) as img:
        assert img.mode == "RGB" and img.size == (SIDE, SIDE)
    lengths = []
    for rel in frame.audio[:5]:
        samples, rate = sf.read(built.parent / rel, dtype="int16")
        assert rate == 16_000 and np.abs(samples).max() > 3000  # speech, not silence
        lengths.append(len(samples))
    caption_words = frame.caption[:5].str.split().str.len()
    assert np.corrcoef(lengths, caption_words)[0, 1] > 0.5  # longer captions take longer to say


def test_many_questions_per_picture_each_answered_by_it(built: Path) -> None:
    frame = pd.read_csv(built, keep_default_na=False)
    meta = pd.read_csv(built.parent / scenes.META)
    asked = scenes.questions(built, per_picture=6)
    assert list(asked.columns) == ["image", "question", "answer", "question_type", "split"]
    assert set(asked["image"]) == set(frame["image"])
    per_picture = asked.groupby("image").size()
    assert per_picture.max() == 6 and per_picture.mean() > 4  # a one-shape picture allows fewer
    assert not asked.duplicated(["image", "question"]).any()
    pictures = {image: i for i, image in enumerate(frame["image"])}
    for row in asked.itertuples():
        i = pictures[row.image]
        shapes = [Shape(**o) for o in json.loads(meta.objects[i])]
        assert _answer(shapes, row.question) == row.answer and row.split == frame.split[i]
    pd.testing.assert_frame_equal(scenes.questions(built, per_picture=6), asked)  # seeded


def test_same_seed_same_bytes(built: Path, tmp_path: Path) -> None:
    from polyfuse.data.datasets import build_dataset

    again = build_dataset("scenes", out=tmp_path, limit=ROWS)
    assert again.read_bytes() == built.read_bytes()
    for rel in ("images/00003.png", "audio/00003.wav"):
        assert (again.parent / rel).read_bytes() == (built.parent / rel).read_bytes()


def test_cli_builds_scenes(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader")
    result = CliRunner().invoke(app, ["datasets", "build", "scenes", "--out", str(tmp_path), "--limit", "6"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "scenes.csv")) == 6
