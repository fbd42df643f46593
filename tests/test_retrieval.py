"""Search indexes: exact neighbours, approximate ones that agree on clear cases, removal, saving;
and searching a pre-trained model's index with a text query."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import polyfuse
from polyfuse.errors import PolyfuseError

faiss = pytest.importorskip("faiss")

from polyfuse.retrieval import KINDS, SearchIndex  # noqa: E402


def _unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clusters(rows: int = 400, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows near 20 well-separated centres, and each centre (the queries)."""
    rng = np.random.default_rng(seed)
    centres = _unit(20, dim, seed + 1)
    x = centres[np.arange(rows) % 20] + rng.normal(0, 0.02, (rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), centres


def test_flat_index_returns_the_exact_neighbours():
    x, queries = _unit(300), _unit(5, seed=9)
    made = SearchIndex.build(x, [f"r{i}" for i in range(300)], "image")
    found = made.search(queries, k=10)
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    assert [[row for row, _ in hits] for hits in found] == [[f"r{i}" for i in e] for e in exact]
    assert found[0][0][1] == pytest.approx(float(queries[0] @ x[exact[0, 0]]), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_finds_a_clusters_rows_and_never_a_removed_one(kind, tmp_path):
    x, centres = _clusters()
    ids = [f"r{i}" for i in range(len(x))]
    made = SearchIndex.build(x, ids, "image", kind)
    hits = made.search(centres[:3], k=20)
    assert all(int(row[1:]) % 20 == c for c, found in enumerate(hits) for row, _ in found)  # its own cluster
    gone = [f"r{i}" for i in range(0, 400, 20)[:10]]  # half of cluster 0's rows
    assert made.remove(gone) == 10 and made.remove(gone) == 0 and len(made) == 390
    again = [row for row, _ in made.search(centres[:1], k=20)[0]]
    rest = {f"r{i}" for i in range(200, 400, 20)}  # cluster 0's other ten rows
    assert len(again) == 20 and set(again[:10]) == rest and not set(again) & set(gone)
    made.add(x[:1], ["r0"])  # a removed id can come back
    assert "r0" in {row for row, _ in made.search(centres[:1], k=20)[0]}
    back = SearchIndex.load(made.save(tmp_path / kind))
    assert back.search(centres[:2], k=15) == made.search(centres[:2], k=15) and len(back) == len(made)


def test_ids_must_be_new_and_match_the_rows():
    made = SearchIndex.build(_unit(4), ["a", "b", "c", "d"], "image")
    with pytest.raises(PolyfuseError, match="already in the index"):
        made.add(_unit(1), ["b"])
    with pytest.raises(PolyfuseError, match="2 embeddings but 1 ids"):
        made.add(_unit(2), ["e"])
    with pytest.raises(PolyfuseError, match="index kind"):
        SearchIndex.build(_unit(4), list("abcd"), "image", "annoy")


def test_search_a_pretrained_models_index_with_text(tmp_path):
    from test_pretrain import OPTIONS, _planted

    frame = _planted()
    polyfuse.pretrain(frame, out=tmp_path / "pre", **OPTIONS)
    made = polyfuse.index(tmp_path / "pre", frame, "tabular", out=tmp_path / "idx")
    assert len(made) == len(frame)
    hits = polyfuse.search(tmp_path / "idx", text="item w3 here", k=10)
    assert len(hits) == 10 and all(frame.loc[int(row), "thing"] == 3 for row, _ in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    with pytest.raises(PolyfuseError, match="give one query"):
        polyfuse.search(tmp_path / "idx", text="a", image="b.png")


def test_cli_index_and_search(tmp_path):
    from typer.testing import CliRunner

    from polyfuse.cli import app
    from test_pretrain import OPTIONS, _planted

    frame = _planted()
    frame.to_csv(tmp_path / "t.csv", index=False)
    polyfuse.pretrain(frame, out=tmp_path / "pre", **OPTIONS)
    runner = CliRunner()
    args = ["index", str(tmp_path / "pre"), str(tmp_path / "t.csv"), "--modality", "tabular"]
    made = runner.invoke(app, [*args, "--out", str(tmp_path / "idx"), "--kind", "hnsw", "--param", "m=16"])
    assert made.exit_code == 0, made.output
    assert f"indexed 300 rows of 'tabular' (hnsw) to {tmp_path / 'idx'}" in made.output
    found = runner.invoke(app, ["search", str(tmp_path / "idx"), "--text", "item w5 here", "-k", "5"])
    assert found.exit_code == 0, found.output
    rows = [line.split("\t") for line in found.output.strip().splitlines()]
    assert len(rows) == 5 and all(frame.loc[int(r), "thing"] == 5 for r, _ in rows)


@pytest.fixture(scope="module")
def planted_model(tmp_path_factory: pytest.TempPathFactory):
    from test_pretrain import OPTIONS, _planted

    out = tmp_path_factory.mktemp("zero") / "pre"
    polyfuse.pretrain(_planted(), out=out, **OPTIONS)
    return out


def test_zero_shot_classifies_by_class_names_alone(planted_model):
    from test_pretrain import _planted

    frame = _planted(seed=3).assign(name=lambda f: "w" + f["thing"].astype(str))
    done = polyfuse.zero_shot(planted_model, frame, "tabular", template="item {} here", label="name")
    assert done.accuracy == 1.0  # the numbers alone, named through the notes the model aligned them with
    assert list(done.predictions.columns) == ["prediction", *sorted(frame["name"].unique())]
    assert np.allclose(done.predictions.iloc[:, 1:].sum(axis=1), 1.0)
    wrong = polyfuse.zero_shot(planted_model, frame, "tabular", template="item {} here", label="name",
                               classes=[f"w{i}" for i in (11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)])  # fmt: skip
    assert wrong.accuracy == 1.0  # the order of the names does not matter
    with pytest.raises(PolyfuseError, match="needs a"):
        polyfuse.zero_shot(planted_model, frame, "tabular", classes=["w1"], template="item here")


def test_a_prompt_ensemble_is_the_normalised_mean_of_its_templates(planted_model):
    from polyfuse.pretrained import load_pretrained
    from test_pretrain import _planted

    model = load_pretrained(planted_model)
    classes = ["w1", "w4", "w7"]
    one, other = (model.class_points(classes, t) for t in ("item {} here", "{} here"))
    both = model.class_points(classes, ["item {} here", "{} here"])
    expected = (one + other) / np.linalg.norm(one + other, axis=1, keepdims=True)
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, one)  # the second template moved the points
    frame = _planted(seed=3).assign(name=lambda f: "w" + f["thing"].astype(str))
    done = polyfuse.zero_shot(planted_model, frame, "tabular", template=["item {} here"] * 2, label="name")
    assert done.accuracy == 1.0  # the same template twice is that template
    with pytest.raises(PolyfuseError, match="needs a"):
        model.class_points(classes, ["item {} here", "item here"])
    with pytest.raises(PolyfuseError, match="needs a"):
        model.class_points(classes, [])


def test_cli_zero_shot_prints_accuracy(planted_model, tmp_path):
    from typer.testing import CliRunner

    from polyfuse.cli import app
    from test_pretrain import _planted

    frame = _planted(seed=4).assign(name=lambda f: "w" + f["thing"].astype(str))
    frame.to_csv(tmp_path / "t.csv", index=False)
    args = ["zero-shot", str(planted_model), str(tmp_path / "t.csv"), "--modality", "tabular"]
    args += ["--zero-shot", "item {} here", "--zero-shot", "item {} here"]  # an ensemble of one template
    args += ["--label", "name", "--out", str(tmp_path / "p.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "accuracy against 'name': 1.0000" in result.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 300


def test_serve_answers_search_from_an_index(planted_model, tmp_path):
    from fastapi.testclient import TestClient

    from polyfuse.serve import ServeConfig, create_app
    from test_pretrain import _planted

    frame = _planted()
    polyfuse.index(planted_model, frame, "tabular", out=tmp_path / "idx")
    fitted = polyfuse.fit(
        frame, "thing", roles={"note": "text"}, max_epochs=1, baselines=False, verbose=False
    )
    fitted.save(tmp_path / "model")
    with TestClient(create_app(str(tmp_path / "model"), ServeConfig(index=str(tmp_path / "idx")))) as client:
        got = client.post("/search", json={"text": "item w7 here", "k": 5})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["modality"] == "tabular" and len(body["results"]) == 5
        assert all(frame.loc[int(r["id"]), "thing"] == 7 for r in body["results"])
        form = client.post("/search", data={"text": "item w2 here"})  # a form works too; k defaults to 10
        assert form.status_code == 200 and len(form.json()["results"]) == 10
        for bad, field in (({"k": 3}, None), ({"text": "a", "k": 0}, "k"), ({"text": " "}, "text")):
            answer = client.post("/search", json=bad)
            assert answer.status_code == 422 and answer.json()["error"]["field"] == field
    with TestClient(create_app(str(tmp_path / "model"), ServeConfig())) as client:
        assert client.post("/search", json={"text": "item w7 here"}).status_code == 404
