"""Text generation (captioning, generative question answering): teacher forcing, greedy and beam
search, the text scores, and planted tables that a short run learns exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import polyfuse
from polyfuse.cli import app
from polyfuse.config import GenerateOptions
from polyfuse.data.batch import Batch
from polyfuse.data.errors import SchemaError
from polyfuse.eval.text_scores import text_scores
from polyfuse.fitting import FitRequest
from polyfuse.generation import GenerateRequest, input_roles
from polyfuse.generator import load_generator
from polyfuse.models.generator import TextGenerator, teacher_forcing

SMALL = {
    "d_model": 32,
    "layers": 1,
    "heads": 2,
    "max_words": 10,
    "max_epochs": 40,
    "batch_size": 32,
    "lr": 3e-3,
}
COLOURS = ("red", "green", "blue", "yellow")


def _described(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """A caption that names two categorical columns' values: planted, so it can be learnt exactly."""
    rng = np.random.default_rng(seed)
    colour, size = rng.choice(COLOURS, rows), rng.choice(["small", "large"], rows)
    captions = [f"a {s} {c} thing, here" for s, c in zip(size, colour, strict=True)]
    return pd.DataFrame({"colour": colour, "size": size, "caption": captions})


def test_teacher_forcing_shifts_the_words_behind_begin_and_ends_each_text():
    targets = torch.tensor([[5, 6, 7], [8, 0, 0]])
    inputs, wanted = teacher_forcing(targets, bos=10, eos=11)
    assert inputs.tolist() == [[10, 5, 6, 7], [10, 8, 0, 0]]
    assert wanted.tolist() == [[5, 6, 7, 11], [8, 11, 0, 0]]


def _untrained(seed: int = 0) -> tuple[TextGenerator, Batch]:
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(3, 8)
    encoder.output_dim = 8  # type: ignore[assignment]
    model = TextGenerator({"x": encoder}, vocab_size=7, max_length=6, d_model=16, layers=1, heads=2).eval()
    batch = Batch(inputs={"x": torch.randn(4, 3)}, mask={"x": torch.ones(4, dtype=torch.bool)})
    return model, batch


def _log_prob(model: TextGenerator, batch: Batch, row: int, words: list[int]) -> float:
    """Log-probability of writing ``words`` then the end for ``row``, as the decoder scores it."""
    memory, pad = model.memory(batch)
    ids = torch.tensor([[model.bos, *words]])
    total = 0.0
    for i, word in enumerate([*words, model.eos]):
        total += float(
            model._next_log_probs(memory[row : row + 1], pad[row : row + 1], ids[:, : i + 1])[0, word]
        )
    return total


def test_beam_search_finds_a_text_at_least_as_probable_per_word_as_greedy():
    model, batch = _untrained()
    greedy = model.generate(batch, beam=1)
    assert model.generate(batch, beam=1) == greedy  # deterministic
    beamed = model.generate(batch, beam=4)
    for row, (g, b) in enumerate(zip(greedy, beamed, strict=True)):
        assert all(2 <= w < model.bos for w in g + b)  # never padding, unknown, begin or end
        per_word = [_log_prob(model, batch, row, words) / (len(words) + 1) for words in (g, b)]
        assert per_word[1] >= per_word[0] - 1e-5


def test_a_row_without_its_input_reads_only_the_null_memory():
    model, batch = _untrained()
    batch.mask["x"][1] = False
    memory, pad = model.memory(batch)
    assert pad[1].tolist() == [False] + [True] * model.prefix_length
    assert not pad[0].any()


def test_text_scores_are_one_for_copies_and_count_exact_matches():
    same = text_scores(
        ["a red circle left of a blue square"] * 2, [["A red circle left of a blue square."]] * 2
    )
    assert same["bleu_4"] == pytest.approx(1.0) and same["rouge_l"] == pytest.approx(1.0)
    assert same["exact_match"] == 1.0  # case and punctuation aside
    mixed = text_scores(["yes", "two", "red"], [["yes"], ["three", "two"], ["blue"]])
    assert mixed["exact_match"] == pytest.approx(2 / 3)
    assert text_scores(["x y z w"], [["a b c d"]])["bleu_1"] == pytest.approx(0.0, abs=1e-6)


def test_inputs_keep_only_the_named_columns_and_never_the_target():
    frame = _described(10)
    req = GenerateRequest(FitRequest(label=[]), GenerateOptions(target="caption", inputs="colour"))
    assert input_roles(frame, req) == {"caption": "ignore", "size": "ignore"}
    grouped = GenerateRequest(FitRequest(label=[]), GenerateOptions(target="caption", references_by="size"))
    assert input_roles(frame, grouped) == {
        "caption": "ignore",
        "size": "ignore",
    }  # a scoring key, not an input
    wrong = [
        GenerateOptions(target="nope"),
        GenerateOptions(target="caption", inputs="caption"),
        GenerateOptions(target="caption", references_by="nope"),
    ]
    for options in wrong:
        with pytest.raises(SchemaError):
            input_roles(frame, GenerateRequest(FitRequest(label=[]), options))


@pytest.mark.slow
def test_a_planted_caption_is_learnt_exactly_saved_and_written_again(tmp_path):
    frame = _described()
    done = polyfuse.fit_text(frame, "caption", out=tmp_path / "gen", **SMALL)
    assert done.test["exact_match"] == 1.0 and done.test["bleu_4"] == pytest.approx(1.0)
    assert done.summary["rows"]["test"] == 36 and done.summary["vocabulary"] == 2 + 10
    again = load_generator(tmp_path / "gen")
    fresh = pd.DataFrame({"colour": COLOURS, "size": ["large", "small", "large", "small"]})
    assert again.write(fresh).tolist() == [
        f"a {s} {c} thing, here" for s, c in zip(fresh["size"], COLOURS, strict=True)
    ]
    assert again.write(fresh, beam=1).tolist() == again.write(fresh, beam=3).tolist()
    assert polyfuse.caption(tmp_path / "gen", "blue", column="colour").startswith("a ")
    first = done.examples[0]
    assert first["inputs"] == {
        "colour": frame.at[int(first["row"]), "colour"],
        "size": frame.at[int(first["row"]), "size"],
    }
    page = polyfuse.report(tmp_path / "gen", tmp_path / "report.html").read_text()
    assert "text generator" in page and "Written next to the truth" in page and first["written"] in page


@pytest.mark.slow
def test_a_captioners_encoders_start_a_question_answerer(tmp_path):
    polyfuse.fit_text(_described(), "caption", out=tmp_path / "gen", **{**SMALL, "max_epochs": 2})
    source = load_generator(tmp_path / "gen")
    frame = _described(seed=1).assign(question="what colour is the thing here?")
    frame["answer"] = frame["colour"]
    roles = {"question": "text", "caption": "ignore"}
    # lr 0: nothing moves, so the encoders are exactly the ones they started from
    fitted = polyfuse.fit(
        frame, "answer", roles=roles, init_from=tmp_path / "gen", lr=0.0, max_epochs=1, baselines=False
    )
    answerer = polyfuse.fit_text(
        frame, "answer", roles=roles, init_from=tmp_path / "gen", **{**SMALL, "lr": 0.0, "max_epochs": 1}
    )
    assert fitted.metrics["init_from"]["modalities"] == ["tabular"]
    theirs = source.model.encoders["tabular"].state_dict()
    for model in (fitted.model, answerer.model):
        mine = model.encoders["tabular"].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_an_image_cell_is_shown_as_a_thumbnail_and_a_missing_file_as_text(tmp_path):
    from PIL import Image

    from polyfuse.htmlreport.crossmodal import cell_html

    Image.new("RGB", (128, 96), (200, 30, 30)).save(tmp_path / "red.png")
    shown = cell_html(str(tmp_path / "red.png"))
    assert shown.startswith('<img class="thumb" src="data:image/png;base64,')
    assert cell_html(str(tmp_path / "gone.png")) == str(tmp_path / "gone.png")
    assert cell_html("/data/clip.wav") == "clip.wav" and cell_html("a <b>") == "a &lt;b&gt;"


@pytest.mark.slow
def test_questions_about_a_thing_are_answered_by_a_generator_and_by_a_classifier(tmp_path):
    rng = np.random.default_rng(1)
    rows = 300
    colour, size = rng.choice(COLOURS, rows), rng.choice(["small", "large"], rows)
    asks_colour = rng.random(rows) < 0.5
    frame = pd.DataFrame(
        {
            "thing": [f"{s}-{c}" for s, c in zip(size, colour, strict=True)],
            "question": np.where(
                asks_colour, "what colour is the thing here?", "what size is the thing here?"
            ),
            "answer": np.where(asks_colour, colour, size),
        }
    )
    roles = {"question": "text", "thing": "categorical"}
    polyfuse.fit_text(frame, "answer", roles=roles, out=tmp_path / "gen", **SMALL)
    polyfuse.fit(frame, "answer", roles=roles, out=tmp_path / "clf", max_epochs=30, baselines=False)
    for model in ("gen", "clf"):
        assert polyfuse.ask(tmp_path / model, "large-blue", "what colour is the thing here?") == "blue"
        assert polyfuse.ask(tmp_path / model, "small-red", "what size is the thing here?") == "small"
    result = CliRunner().invoke(
        app, ["ask", str(tmp_path / "gen"), "large-green", "what colour is the thing here?"]
    )
    assert result.exit_code == 0 and result.output.strip() == "green"


@pytest.mark.parametrize("command", ["fit-text", "caption", "ask"])
def test_the_generation_commands_answer_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
