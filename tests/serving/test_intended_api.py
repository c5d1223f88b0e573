"""The API warns when an upload is outside the model's intended input (issue 12, item 13)."""

from __future__ import annotations

import dataclasses

import numpy as np

from cxrkit.models import load_bundle
from cxrkit.serving.predictor import Predictor
from tests.serving.conftest import png_bytes


def test_trained_bundle_declares_thumbnails(serving_bundle):
    ii = load_bundle(serving_bundle).intended_input
    assert ii is not None and ii.min_side == 16 and ii.max_side == 128  # trained on 32 px images
    assert "32x32" in ii.description


def test_predict_and_explain_warn_outside_the_intended_input(make_client, serving_bundle, tmp_path):
    client, app = make_client()
    bundle = load_bundle(serving_bundle)
    served = app.state.cxr.models["tiny"]
    assert served.info["intended_input"]["max_side"] == 128
    big = png_bytes(1, size=300)
    for route in ("/v1/predict", "/v1/explain"):
        r = client.post(route, files={"file": ("big.png", big, "image/png")})
        assert r.status_code == 200, r.text
        (w,) = r.json()["warnings"]
        assert "300x300" in w and "at most 128 px" in w
    ok = client.post("/v1/predict", files={"file": ("ok.png", png_bytes(1, size=40), "image/png")})
    assert ok.status_code == 200 and ok.json()["warnings"] == []
    # A bundle without a declaration warns about nothing.
    bare = Predictor(dataclasses.replace(bundle, intended_input=None), served.predictor.engine)
    assert bare.input_warnings(np.zeros((900, 900))) == []
