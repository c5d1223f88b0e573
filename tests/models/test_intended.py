"""Each bundle declares its intended input; images outside it get a warning (issue 12, item 13)."""

from __future__ import annotations

import json

import pytest

from cxrkit.core.errors import BundleError
from cxrkit.models import load_bundle, resolve_bundle
from cxrkit.models.intended import IntendedInput


def test_warnings_name_the_size_and_the_expectation():
    mnist = IntendedInput("28 px MedMNIST thumbnails", min_side=None, max_side=64)
    assert mnist.warnings(28, 28) == []
    (w,) = mnist.warnings(1024, 900)
    assert "1024x900" in w and "at most 64 px" in w and "MedMNIST" in w
    full = IntendedInput("frontal CXRs", min_side=128)
    assert full.warnings(224, 224) == [] and "at least 128 px" in full.warnings(28, 28)[0]


@pytest.mark.parametrize(
    "bad", [{"min_side": "big"}, {"max_side": 0}, {"min_side": 100, "max_side": 50}, {"min_side": True}, "28px"]
)
def test_bad_declarations_are_bundle_errors(bad):
    with pytest.raises(BundleError, match="intended_input"):
        IntendedInput.from_dict(bad)


def test_every_shipped_bundle_declares_it_and_pneumoniamnist_warns_for_a_radiograph():
    from cxrkit.models.bundle import SHIPPED_DIR

    for cfg in SHIPPED_DIR.glob("*/config.json"):
        assert "intended_input" in json.loads(cfg.read_text()), cfg.parent.name
    mnist = load_bundle(resolve_bundle("pneumoniamnist")).intended_input
    assert mnist is not None and mnist.warnings(28, 28) == [] and mnist.warnings(1024, 1024)
    pneu = load_bundle(resolve_bundle("pneumonia")).intended_input
    assert pneu is not None and pneu.warnings(28, 28) and pneu.warnings(1024, 1024) == []


def test_trained_bundle_records_it(tmp_path):
    """train_from_recipe derives it from the training images (32 px here: a thumbnail model)."""
    from cxrkit.core.preprocess import Preprocessing
    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.models.bundle import save_bundle
    from cxrkit.models.registry import create_model

    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    prep = Preprocessing(image_size=32)
    model = create_model("tiny_cnn", space, weights="none", image_size=32)
    ii = IntendedInput("thumbnails", 16, 128)
    out = save_bundle(tmp_path / "b", model, "tiny_cnn", space, prep, None, {}, {}, "test", intended_input=ii)
    assert load_bundle(out).intended_input == ii
    assert "Intended input: thumbnails" in (out / "MODEL_CARD.md").read_text()
