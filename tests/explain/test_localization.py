from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.errors import DataFormatError
from cxrkit.explain import (
    best_box_iou,
    box_iou,
    pointing_hit,
    read_nih_boxes,
    scale_box,
    score_localization,
    summarize_localization,
)


def test_box_iou_hand_values():
    a = {"x": 0, "y": 0, "w": 10, "h": 10}
    assert box_iou(a, a) == 1.0
    assert box_iou(a, {"x": 5, "y": 0, "w": 10, "h": 10}) == pytest.approx(50 / 150)
    assert box_iou(a, {"x": 5, "y": 5, "w": 10, "h": 10}) == pytest.approx(25 / 175)
    assert box_iou(a, {"x": 10, "y": 0, "w": 5, "h": 5}) == 0.0  # touching edges
    assert box_iou(a, {"x": 2, "y": 2, "w": 0, "h": 0}) == 0.0


def test_pointing_game():
    cam = np.zeros((50, 60), np.float32)
    cam[20, 40] = 1.0  # peak at row 20, column 40
    inside = {"x": 35, "y": 15, "w": 10, "h": 10}
    transposed = {"x": 15, "y": 35, "w": 10, "h": 10}  # (row, col) swapped: must miss
    assert pointing_hit(cam, [inside])
    assert not pointing_hit(cam, [transposed])
    assert pointing_hit(cam, [transposed, inside])  # any GT box counts
    near = {"x": 43, "y": 15, "w": 5, "h": 10}  # 2.5 px right of the peak pixel's centre
    assert not pointing_hit(cam, [near]) and pointing_hit(cam, [near], tolerance=3)
    assert not pointing_hit(np.full((50, 60), 0.7, np.float32), [{"x": 0, "y": 0, "w": 60, "h": 50}])


def test_best_box_iou_uses_the_top_box():
    gt = [{"x": 10, "y": 10, "w": 20, "h": 20}]
    top = {"x": 10, "y": 10, "w": 20, "h": 10, "score": 0.9}
    other = {"x": 10, "y": 10, "w": 20, "h": 20, "score": 0.6}
    assert best_box_iou([top, other], gt) == pytest.approx(0.5)
    assert best_box_iou([], gt) == 0.0
    cam = np.zeros((40, 40), np.float32)
    cam[15, 15] = 1
    assert score_localization(cam, [top], gt) == {"hit": True, "iou": pytest.approx(0.5)}


def test_summary():
    s = summarize_localization(
        [
            {"hit": True, "iou": 0.5, "finding": "Mass"},
            {"hit": False, "iou": 0.0, "finding": "Mass"},
            {"hit": True, "iou": 0.2, "finding": "Nodule"},
        ]
    )
    assert s["n"] == 3 and s["hit_rate"] == pytest.approx(2 / 3) and s["mean_iou"] == pytest.approx(0.7 / 3)
    assert s["per_finding"]["Mass"] == {"n": 2, "hit_rate": 0.5, "mean_iou": 0.25}
    assert summarize_localization([]) == {"n": 0, "hit_rate": None, "mean_iou": None, "per_finding": {}}


def test_read_nih_boxes_and_scale(tmp_path):
    csv = tmp_path / "BBox_List_2017.csv"
    csv.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "a.png,Mass,512,256,128,64\n"
        "a.png,Nodule,0,0,10,10\n"
        "b.png,Effusion,100.5,200.25,50,60\n"
    )
    gt = read_nih_boxes(csv)
    assert set(gt) == {"a.png", "b.png"} and len(gt["a.png"]) == 2
    assert gt["a.png"][0] == {"finding": "Mass", "x": 512.0, "y": 256.0, "w": 128.0, "h": 64.0}
    small = scale_box(gt["a.png"][0], (64, 128))  # H=64, W=128 copy of a 1024 x 1024 original
    assert (small["x"], small["y"], small["w"], small["h"]) == (64.0, 16.0, 16.0, 4.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Mass,1,2,three,4\n")
    with pytest.raises(DataFormatError, match="line 2"):
        read_nih_boxes(bad)
    with pytest.raises(DataFormatError, match="no such"):
        read_nih_boxes(tmp_path / "missing.csv")


@pytest.mark.real_data
def test_read_real_nih_boxes(shared_data):
    path = shared_data / "nih-1000-64px" / "BBox_List_2017.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    gt = read_nih_boxes(path)
    rows = [b for boxes in gt.values() for b in boxes]
    assert len(rows) > 900  # the official list has 984 boxes
    assert {"Atelectasis", "Cardiomegaly", "Effusion"} <= {b["finding"] for b in rows}
    assert all(0 <= b["x"] < 1024 and 0 < b["w"] <= 1024 for b in rows)
