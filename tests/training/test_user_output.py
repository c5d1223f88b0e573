"""What a user sees on stderr (issue 12, item 14): progress without a terminal, no library noise."""

from __future__ import annotations

import logging

import pytest

from cxrkit.cli import setup_logging
from tests.conftest import TINY_CNN


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("faiss.loader", "onnx_ir", "onnxscript")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, lv in levels.items():
        logging.getLogger(n).setLevel(lv)


def test_library_noise_is_silenced_but_cxrkit_info_is_not(capsys, restore_logging):
    setup_logging(quiet=False)
    logging.getLogger("faiss.loader").info("Loading faiss with AVX2 support.")
    logging.getLogger("faiss.loader").info("Could not load library with AVX2 support due to: ModuleNotFoundError")
    logging.getLogger("onnx_ir.passes._pass_infra").info("PassManager: running pass 3")
    tip = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info(tip)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
    logging.getLogger("cxrkit.training").info("epoch 1/2: val_auroc 0.9")
    logging.getLogger("faiss.loader").warning("a real faiss problem")
    err = capsys.readouterr().err
    assert "AVX2" not in err and "PassManager" not in err and "Tip" not in err and "GPU available" not in err
    assert "epoch 1/2" in err and "a real faiss problem" in err


def test_progress_logs_lines_without_a_terminal(caplog, monkeypatch):
    from cxrkit.core import progress

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with caplog.at_level("INFO", logger="cxrkit.test"), progress.Progress(10, "embedding", logger="cxrkit.test") as p:
        for _ in range(5):
            p.update(2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("embedding: 2/10 img (20%)") and lines[-1].startswith("embedding: 10/10 img (100%)")


def test_index_embedding_reports_progress(trained, learnable, caplog):
    from cxrkit.data import load_dataset
    from cxrkit.models import load_bundle
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.search.embeddings import embed_table

    _, out = trained
    with caplog.at_level("INFO", logger="cxrkit.search.embeddings"):
        vecs = embed_table(load_bundle(out / "bundle"), load_dataset(learnable), InferenceOptions(batch_size=16))
    assert len(vecs) == 48
    assert any("embedding: 48/48 img (100%)" in r.getMessage() for r in caplog.records)


def test_training_without_a_terminal_logs_each_epoch(learnable, tmp_path, caplog):
    from cxrkit.training.recipe import load_recipe
    from cxrkit.training.run import train_from_recipe

    recipe = load_recipe(
        None,
        [f"data.sources=[{learnable}]", f"out={tmp_path}", *TINY_CNN, "augment.enabled=false", "train.epochs=2",
         "train.batch_size=16"],
    )  # fmt: skip
    with caplog.at_level("INFO", logger="cxrkit.training"):
        train_from_recipe(recipe, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "cxrkit.training"]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("train_loss" in ln and "val_auroc" in ln for ln in lines)
