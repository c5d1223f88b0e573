"""The audit's report files, the model card's Shortcut audit section, `--record` and the `cxr audit` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cxrkit.audit import card_summary, record_audit, write_audit_report
from cxrkit.core.errors import BundleError
from cxrkit.core.files import sha256_file
from cxrkit.data import write_manifest
from cxrkit.models import create_model, load_bundle, save_bundle
from cxrkit.models.bundle import WEIGHTS_FILE
from cxrkit.models.card import render_model_card
from tests.audit.conftest import PREP, SIZE, SPACE


@pytest.fixture
def tiny_bundle(tmp_path) -> Path:
    """An untrained tiny_cnn saved as a real bundle (the CLI and --record need one on disk)."""
    torch.manual_seed(0)
    model = create_model("tiny_cnn", SPACE, weights="none", image_size=SIZE)
    return save_bundle(tmp_path / "bundle", model, "tiny_cnn", SPACE, PREP, 0.5, {}, {"dataset": "synthetic"}, "test")


def test_report_files_say_what_each_number_means(shortcut_audit, tmp_path):
    written = write_audit_report(shortcut_audit, tmp_path / "rep", title="Audit <test>")
    for key in ("audit_json", "report_md", "report_html", "auroc", "probes", "cams"):
        assert written[key].is_file() and written[key].stat().st_size > 0, key
    data = json.loads(written["audit_json"].read_text())
    assert data["checks"]["border"]["status"] == "fail"
    md = written["report_md"].read_text()
    for check in data["checks"].values():
        assert check["verdict"] in md and check["meaning"] in md
    assert "![" in md and "auroc.png" in md
    html = written["report_html"].read_text()
    assert "Audit &lt;test&gt;" in html and "<test>" not in html
    assert html.count("data:image/png;base64,") == 3


def test_card_section_and_first_line_warning(shortcut_audit, clean_audit):
    base = {
        "architecture": "tiny_cnn",
        "label_space": SPACE.to_dict(),
        "preprocessing": PREP.to_dict(),
        "extra": {},
    }
    plain = render_model_card(base)
    assert "## Shortcut audit" in plain and "Not run yet" in plain
    bad = render_model_card({**base, "extra": {"shortcut_audit": card_summary(shortcut_audit)}})
    head = "\n".join(bad.splitlines()[:5])
    assert "fails the shortcut audit" in head  # said in the card's first lines
    assert "| Border test | FAIL |" in bad and "Additional information" not in bad
    good = render_model_card({**base, "extra": {"shortcut_audit": card_summary(clean_audit)}})
    assert "fails the shortcut audit" not in good and "The model meets the lung-focus targets" in good


def test_record_keeps_the_weights_and_updates_the_card(tiny_bundle, shortcut_audit):
    before = sha256_file(tiny_bundle / WEIGHTS_FILE)
    wrong = {**shortcut_audit.summary, "model": {"sha256": "f" * 64}}
    with pytest.raises(BundleError, match="re-run `cxr audit`"):
        record_audit(tiny_bundle, wrong)
    ok = {**shortcut_audit.summary, "model": {"sha256": before}}
    record_audit(tiny_bundle, ok)
    assert sha256_file(tiny_bundle / WEIGHTS_FILE) == before
    bundle = load_bundle(tiny_bundle)  # still loads: sha256 and config intact
    assert bundle.extra["shortcut_audit"]["checks"]["border"]["status"] == "fail"
    assert "fails the shortcut audit" in (tiny_bundle / "MODEL_CARD.md").read_text()


def test_cli_audit_writes_the_report_and_records(tiny_bundle, clean_set, tmp_path):
    from cxrkit.cli import app

    manifest = write_manifest(clean_set.subset(np.arange(24)), tmp_path / "m.csv")
    out = tmp_path / "audit"
    args = ["audit", str(manifest), "--model", str(tiny_bundle), "--lungs", "prior", "--cam-per-class", "3"]
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--json", "--record"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["data"]["n_images"] == 24 and data["lung_masks"]["name"] == "prior"
    assert "fixed prior" in data["lung_masks"]["note"]
    assert set(data["checks"]) == {"source_probe", "confounding", "per_source", "occlusion", "cam_in_lungs", "border"}
    assert (out / "report.html").is_file() and (out / "audit.json").is_file()
    assert "## Shortcut audit" in (tiny_bundle / "MODEL_CARD.md").read_text()
    assert "Not run yet" not in (tiny_bundle / "MODEL_CARD.md").read_text()
    cheap = ["audit", str(manifest), "--model", str(tiny_bundle), "--lungs", "none", "--cam-per-class", "0"]
    text = CliRunner().invoke(app, [*cheap, "--max-per-source", "5"])
    assert text.exit_code == 0, text.output
    assert "[SKIPPED] 4. Occlusion" in text.output
    assert "Border test" in text.output and "10 images" in text.output  # 5 per source, two sources
    bad = CliRunner().invoke(app, [*args, "--fill", "white"])
    assert bad.exit_code == 2 and "Unknown fill" in bad.output


def test_unseen_only_leaves_out_training_images(clean_set, tmp_path):
    from cxrkit.audit import AuditOptions, run_audit
    from cxrkit.core.errors import ConfigError
    from cxrkit.data.fingerprint import split_record
    from cxrkit.models.engine import InferenceOptions

    torch.manual_seed(0)
    model = create_model("tiny_cnn", SPACE, weights="none", image_size=SIZE)
    train, val = clean_set.subset(np.arange(0, 10)), clean_set.subset(np.arange(10, 14))
    record = split_record(train, val, workers=1)
    bundle = save_bundle(tmp_path / "b", model, "tiny_cnn", SPACE, PREP, 0.5, {}, {}, "test", images=record)
    manifest = write_manifest(clean_set.subset(np.arange(24)), tmp_path / "m.csv")
    opts = dict(lungs="none", options=AuditOptions(cam_per_class=0), inference=InferenceOptions(num_workers=0))
    everything = run_audit(bundle, [str(manifest)], **opts)
    assert everything.summary["data"]["seen_in_training"] == {"checked": True, "count": 14, "fraction": 14 / 24}
    unseen = run_audit(bundle, [str(manifest)], unseen_only=True, **opts)
    assert unseen.summary["data"]["n_images"] == 10 and unseen.summary["data"]["seen_in_training"]["count"] == 0
    plain = save_bundle(tmp_path / "plain", model, "tiny_cnn", SPACE, PREP, 0.5, {}, {}, "test")
    with pytest.raises(ConfigError, match="records no image hashes"):
        run_audit(plain, [str(manifest)], unseen_only=True, **opts)
