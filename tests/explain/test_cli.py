from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cxrkit.cli import app

runner = CliRunner()


def test_explain_writes_three_files_per_image(blob_bundle, blobs, tmp_path):
    out = tmp_path / "cams"
    files = sorted((blobs / "PNEUMONIA").iterdir())[:2] + sorted((blobs / "NORMAL").iterdir())[:1]
    r = runner.invoke(app, ["explain", "--model", str(blob_bundle), *map(str, files), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) >= {"model", "method", "images"} and doc["method"] == "gradcam"
    assert doc["model"]["classes"] == ["NORMAL", "PNEUMONIA"]
    assert len(doc["images"]) == 3
    for f, rec in zip(files, doc["images"], strict=True):
        assert set(rec) >= {"path", "target", "probability", "overlay", "map", "boxes"}
        assert rec["path"] == str(f)
        stem = f.stem
        for suffix in ("_cam.png", "_cam.npy", "_boxes.json"):
            assert (out / f"{stem}{suffix}").is_file()
        assert rec["overlay"] == str(out / f"{stem}_cam.png") and rec["map"] == str(out / f"{stem}_cam.npy")
        h, w = np.asarray(Image.open(f)).shape
        cam = np.load(out / f"{stem}_cam.npy")
        assert cam.shape == (h, w) and cam.dtype == np.float32
        assert np.asarray(Image.open(out / f"{stem}_cam.png")).shape == (h, w, 3)
        saved = json.loads((out / f"{stem}_boxes.json").read_text())
        assert saved["boxes"] == rec["boxes"] and saved["target"] == rec["target"]
    assert [rec["target"] for rec in doc["images"]] == ["PNEUMONIA", "PNEUMONIA", "NORMAL"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_explain_folder_method_and_target_text_output(blob_bundle, blobs, tmp_path):
    out = tmp_path / "cams"
    r = runner.invoke(
        app,
        ["explain", "-m", str(blob_bundle), str(blobs / "NORMAL"), "-o", str(out), "--method", "eigencam",
         "--target", "pneumonia"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*_cam.npy"))) == 24
    assert r.stdout.count("PNEUMONIA") == 24 and "_cam.png" in r.stdout


def test_explain_bad_input_exit_code_2(blob_bundle, blobs, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    r = runner.invoke(app, ["explain", "--model", str(blob_bundle), str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "empty" in r.stderr
    img = str(next((blobs / "NORMAL").iterdir()))
    r = runner.invoke(app, ["explain", "-m", str(blob_bundle), img, "-o", str(tmp_path / "o"), "--target", "nodule"])
    assert r.exit_code == 2 and "NORMAL" in r.stderr and "PNEUMONIA" in r.stderr
    r = runner.invoke(app, ["explain", "-m", str(blob_bundle), img, "-o", str(tmp_path / "o"), "--method", "nope"])
    assert r.exit_code == 2 and "gradcam" in r.stderr


def test_explain_boxes_scores_localisation(blob_bundle, blobs, tmp_path):
    pneu = sorted((blobs / "PNEUMONIA").iterdir())[:4]
    normal = sorted((blobs / "NORMAL").iterdir())[:1]
    # the blob of the 40 px images is centred, sigma 40/6 px: in 1024 px coordinates, a centred box
    lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    lines += [f"{p.name},Pneumonia,358.4,358.4,307.2,307.2" for p in pneu]
    lines += [f"{normal[0].name},Nodule,0,0,100,100"]  # not a class of this model: explained, not scored
    csv = tmp_path / "BBox_List_2017.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cams"
    args = ["explain", "-m", str(blob_bundle), *map(str, pneu + normal), "-o", str(out), "--boxes", str(csv)]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    loc = doc["localization"]
    assert loc["n"] == 4 and loc["skipped_unknown_finding"] == 1
    assert loc["hit_rate"] >= 0.75 and loc["mean_iou"] > 0.2
    assert loc["per_finding"]["PNEUMONIA"]["n"] == 4
    rec = doc["images"][0]
    assert rec["target"] == "PNEUMONIA" and rec["gt_boxes"][0]["x"] == 14.0  # 358.4 * 40 / 1024
    assert json.loads((out / f"{pneu[0].stem}_boxes.json").read_text())["localization"]["hit"] in (True, False)
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "pointing-game hit rate" in r.stdout


def test_nih_box_finding_aliases():
    from types import SimpleNamespace

    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.explain.export import _gt_target

    bundle = SimpleNamespace(label_space=LabelSpace(TaskType.MULTILABEL, ("Effusion", "Infiltration")))
    gt = [
        {"finding": "Nodule", "x": 0, "y": 0, "w": 1, "h": 1},
        {"finding": "Infiltrate", "x": 1, "y": 1, "w": 2, "h": 2},
    ]
    cls, boxes = _gt_target(bundle, gt)
    assert cls == "Infiltration" and boxes == gt[1:]  # the box list's 'Infiltrate' is the labels' 'Infiltration'


def test_explain_takes_predicts_backend_and_gives_its_probabilities(blob_bundle, blobs, tmp_path):
    """--backend/--precision reach explain: the probability shown is cxr predict's with the same options."""
    files = [str(p) for p in sorted((blobs / "PNEUMONIA").iterdir())[:2]]
    opts = ["--model", str(blob_bundle), "--backend", "onnx", "--json"]
    r = runner.invoke(app, ["explain", *files, "--out", str(tmp_path / "cams"), *opts])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["model"]["backend"] == "onnx"
    p = runner.invoke(app, ["predict", *files, *opts])
    assert p.exit_code == 0, p.output
    predicted = json.loads(p.stdout)["predictions"]
    for rec, pred in zip(doc["images"], predicted, strict=True):
        assert rec["probability"] == pred["probabilities"][rec["target"]]
