"""Served answers are the model's: single rows, absent modalities, batches, the ONNX backend."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

import polyfuse
from polyfuse.data.table import read_table
from polyfuse.serve import ServeConfig, create_app
from serve.serving import (
    FIELDS,
    MODALITIES,
    as_json,
    assert_close,
    assert_error,
    expected,
    fields_of,
    png,
    post,
)

# --- served answers are the model's ------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 1, 5])
def test_multipart_and_json_give_the_predictors_probabilities(small, api, i):
    fields = fields_of(small, i)
    by_form, by_json = post(api, fields, "multipart"), post(api, fields, "json")
    assert by_form.status_code == 200, by_form.text
    assert by_json.status_code == 200, by_json.text
    want = expected(small, i)
    assert_close(by_form.json()["probabilities"], want)
    assert_close(by_json.json()["probabilities"], want)
    body = by_json.json()
    assert body["label"] == "kind" and body["prediction"] == max(want, key=want.__getitem__)
    assert body["present"] == dict.fromkeys(MODALITIES, True)
    assert body["latency_ms"] >= 0


@pytest.mark.slow
def test_the_onnx_backend_serves_the_same_answers(small, tmp_path):
    """``serve --backend onnx``: onnxruntime on the exported model, same preprocessing and answers."""
    pytest.importorskip("onnxruntime")
    from polyfuse.export import export_onnx

    onnx = tmp_path / "model.onnx"
    export_onnx(polyfuse.load(small.folder), onnx)
    with TestClient(
        create_app(str(small.folder), ServeConfig(backend="onnx", onnx_path=str(onnx)))
    ) as client:
        assert client.get("/model").json()["backend"] == "onnx"
        for i, absent in [(0, ()), (4, ("clip", "text"))]:
            fields = fields_of(small, i, tuple(f for f in FIELDS if f not in absent))
            answer = post(client, fields, "multipart")
            assert answer.status_code == 200, answer.text
            assert_close(answer.json()["probabilities"], expected(small, i, absent), tol=1e-4)
        explained = post(client, fields_of(small, 2), "multipart", "/explain").json()
        assert sum(explained["contributions"].values()) == pytest.approx(
            explained["full"] - explained["base"], abs=1e-5
        )


def test_a_data_url_is_the_same_as_its_base64(small, api):
    fields = as_json(fields_of(small, 2, ("img",)))
    plain = api.post("/predict", json=fields).json()
    url = api.post("/predict", json={"img": "data:image/png;base64," + fields["img"]}).json()
    assert url["probabilities"] == plain["probabilities"]


@pytest.mark.parametrize(
    "sent",
    [
        ("img",),
        ("clip",),
        ("text",),
        ("x1",),
        ("colour",),
        ("img", "text"),
        ("clip", "x1"),
        ("colour", "text"),
    ],
    ids=lambda s: "+".join(s),
)
def test_absent_modalities_are_masked_as_in_the_table(small, api, sent):
    i = 4
    response = post(api, fields_of(small, i, sent), "multipart")
    assert response.status_code == 200, response.text
    body = response.json()
    tabular = "x1" in sent or "colour" in sent
    present = {m: m in sent for m in ("img", "clip", "text")} | {"tabular": tabular}
    assert body["present"] == present
    absent = tuple(f for f in FIELDS if f not in sent)
    assert_close(body["probabilities"], expected(small, i, absent))


def test_a_real_trained_model_is_served_unchanged(digits_model, digits_table):
    predictor, folder = digits_model
    frame, root = read_table(digits_table)
    test = frame[frame["split"] == "test"].head(30)
    want = predictor.predict_proba((test, root))
    rows = []
    for _, row in test.iterrows():
        fields = {"image": (root / row["image"]).read_bytes(), "audio": (root / row["audio"]).read_bytes()}
        rows.append(as_json({**fields, "text": row["text"]}))
    with TestClient(create_app(str(folder))) as client:
        served = client.post("/predict/batch", json={"rows": rows})
        single = client.post("/predict", json=rows[0])
    assert served.status_code == 200, served.text
    results = served.json()["results"]
    assert single.json()["probabilities"] == results[0]["probabilities"]
    for result, (_, p) in zip(results, want.iterrows(), strict=True):
        assert_close(result["probabilities"], {str(c): float(v) for c, v in p.items()})
    accuracy = np.mean([str(r["prediction"]) == str(d) for r, d in zip(results, test["digit"], strict=True)])
    assert accuracy >= 0.6  # ten classes: chance is 0.1


# --- /predict/batch ---------------------------------------------------------------------------------


def test_batch_equals_single_calls_row_by_row(small, api):
    rows = [
        as_json(fields_of(small, 0)),
        as_json(fields_of(small, 7, ("img", "colour"))),
        as_json(fields_of(small, 11, ("text",))),
    ]
    response = api.post("/predict/batch", json={"rows": rows})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for row, result in zip(rows, results, strict=True):
        single = api.post("/predict", json=row).json()
        # a batch of 3 and a batch of 1 are not bitwise the same arithmetic (BLAS picks its kernels by
        # shape), so a probability at a rounding boundary may print one unit of its 6th decimal apart
        assert_close(result["probabilities"], single["probabilities"], tol=1.01e-6)
        assert result["prediction"] == single["prediction"] and result["present"] == single["present"]
    bare = api.post("/predict/batch", json=rows).json()["results"]  # a bare list works too
    assert [r["probabilities"] for r in bare] == [r["probabilities"] for r in results]


def test_batch_limits_and_bad_rows_name_the_row(small, tight):
    row = {"x1": 0.5}
    assert tight.post("/predict/batch", json={"rows": [row] * 3}).status_code == 200
    assert_error(tight.post("/predict/batch", json={"rows": [row] * 4}), 413, "rows")
    assert_error(tight.post("/predict/batch", json={"rows": []}), 422, "rows")
    assert_error(tight.post("/predict/batch", json={"rows": [row, {"x1": "many"}]}), 422, "rows[1].x1")
    assert_error(tight.post("/predict/batch", json={"rows": [row, {"nope": 1}]}), 422, "rows[1].nope")
    assert_error(tight.post("/predict/batch", json={"rows": [row, 5]}), 422, "rows[1]")
    assert_error(tight.post("/predict/batch", json={"rows": [row, {}]}), 422, "rows[1]")


def test_an_image_that_fails_to_decode_names_its_field(small, api):
    whole = png(seed=3)
    truncated = whole[: len(whole) // 2]  # the header reads, the pixels do not
    assert_error(post(api, {"img": truncated, "x1": 1.0}, "multipart"), 422, "img")
    rows = [{"x1": 1.0}, as_json({"img": truncated})]
    assert_error(api.post("/predict/batch", json={"rows": rows}), 422, "rows[1].img")
