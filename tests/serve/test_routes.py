"""/explain, /model, /openapi.json, the API key, /metrics and the serve command."""

from __future__ import annotations

import sys
import threading

import pytest
from fastapi.testclient import TestClient

from polyfuse.serve import ServeConfig, create_app
from serve.serving import CLASSES, COLOURS, FIELDS, MODALITIES, assert_error, fields_of, metric_samples, post

# --- /explain, /model, /openapi.json ----------------------------------------------------------------


@pytest.mark.parametrize("sent", [FIELDS, ("img", "text"), ("colour",)], ids=lambda s: "+".join(s))
def test_explain_contributions_add_up_to_full_minus_base(small, api, sent):
    response = post(api, fields_of(small, 3, sent), "json", "/explain")
    assert response.status_code == 200, response.text
    body = response.json()
    contributions = body["contributions"]
    assert set(contributions) == set(MODALITIES)
    assert abs(sum(contributions.values()) - (body["full"] - body["base"])) <= 1e-5
    for modality, present in body["present"].items():
        if not present:
            assert contributions[modality] == 0.0
    assert abs(body["full"] - body["probabilities"][body["prediction"]]) <= 1e-5
    assert body["target"] == f"probability of {body['prediction']!r}"


def test_model_lists_fields_labels_and_limits(tight):
    body = tight.get("/model").json()
    assert {f["name"]: f["kind"] for f in body["fields"]} == {
        "img": "image",
        "clip": "audio",
        "text": "text",
        "x1": "numeric",
        "colour": "categorical",
    }
    colour = next(f for f in body["fields"] if f["name"] == "colour")
    assert colour["categories"] == sorted(COLOURS) and colour["modality"] == "tabular"
    assert body["labels"] == [{"column": "kind", "task": "multiclass", "classes": list(CLASSES)}]
    assert body["limits"]["max_image_pixels"] == 100 and body["limits"]["max_batch_rows"] == 3
    assert body["modalities"] == list(MODALITIES) and body["backend"] == "torch"


def test_openapi_has_the_request_bodies(tight):
    spec = tight.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]["properties"]
    as_json_ = content["application/json"]["schema"]["properties"]
    assert set(form) == set(as_json_) == set(FIELDS)
    assert form["img"]["format"] == "binary" and as_json_["img"]["format"] == "byte"
    assert as_json_["x1"]["type"] == "number" and as_json_["text"]["maxLength"] == 50
    assert as_json_["colour"]["enum"] == sorted(COLOURS)
    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["properties"]["rows"]["maxItems"] == 3
    assert tight.get("/docs").status_code == 200 and "polyfuse" in tight.get("/").text.lower()


# --- API key, metrics --------------------------------------------------------------------------------


def test_api_key(small):
    with TestClient(create_app(str(small.folder), ServeConfig(api_key="k"))) as client:
        for method, path, kwargs in (("post", "/predict", {"json": {"x1": 1}}), ("get", "/model", {})):
            call = getattr(client, method)
            assert_error(call(path, **kwargs), 401)
            assert_error(call(path, headers={"x-api-key": "wrong"}, **kwargs), 401)
            assert call(path, headers={"x-api-key": "k"}, **kwargs).status_code == 200
        assert_error(client.get("/metrics"), 401)
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200


def test_metrics_count_requests_by_status_and_batch_sizes(small, api):
    before = metric_samples(api)
    for _ in range(3):
        assert api.post("/predict", json={"x1": 0.1}).status_code == 200
    api.post("/predict", json={"x1": "many"})
    api.post("/predict", content=b"{", headers={"content-type": "application/json"})
    api.post("/predict/batch", json={"rows": [{"x1": 1}, {"x1": 2}]})
    after = metric_samples(api)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("polyfuse_requests_total", path="/predict", status="200") == 3
    assert delta("polyfuse_requests_total", path="/predict", status="422") == 1
    assert delta("polyfuse_requests_total", path="/predict", status="400") == 1
    assert delta("polyfuse_requests_total", path="/predict/batch", status="200") == 1
    assert delta("polyfuse_request_latency_seconds_count", path="/predict") == 5
    assert delta("polyfuse_batch_size_count") == 4  # the 422 and the 400 never reached the model
    assert delta("polyfuse_batch_size_sum") == 5
    assert delta("polyfuse_batch_size_bucket", le="2.0") == 4


# --- the command line -----------------------------------------------------------------------------------


def test_serve_help():
    from typer.testing import CliRunner

    from polyfuse.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--api-key-env", "--max-batch", "--workers", "--backend"):
        assert option in result.output


def test_serve_with_an_unset_api_key_variable_exits_2(small, monkeypatch, capsys):
    from polyfuse.cli import main

    monkeypatch.delenv("POLYFUSE_TEST_NO_SUCH_KEY", raising=False)
    started = threading.Event()
    monkeypatch.setattr("polyfuse.serve.app.serve", lambda *args: started.set())
    argv = ["polyfuse", "serve", str(small.folder), "--api-key-env", "POLYFUSE_TEST_NO_SUCH_KEY"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --api-key-env POLYFUSE_TEST_NO_SUCH_KEY") and "unset" in err
    assert len(err.splitlines()) == 1 and not started.is_set()


def test_serve_without_the_serve_extra_says_which_to_install():
    import subprocess

    code = (
        "import sys; sys.modules['fastapi'] = None; sys.argv = ['polyfuse', 'serve', 'model']; "
        "from polyfuse.cli import main; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'polyfuse[serve]'" in done.stderr and "Traceback" not in done.stderr
