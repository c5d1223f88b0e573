"""Timeline ordering (date, then offset, then file name), severity and the drift rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.table import CxrTable
from cxrkit.search import build_timeline, drift_verdict, order_studies, severity_from_probs


def frame(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"path": [f"/d/img{i}.png" for i in range(n)], "patient_id": ["p"] * n, "source": ["s"] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_orders_by_date_first():
    f = frame(study_date=["2020-03-05", "2020-01-02", "2020-02-10"], offset=[1.0, 30.0, 2.0])
    order, key, values, _ = order_studies(f)
    assert key == "study_date" and order.tolist() == [1, 2, 0]
    assert [v[0] for v in values] == ["2020-01-02", "2020-02-10", "2020-03-05"]


def test_date_ties_broken_by_offset_and_missing_date_falls_back_to_offset():
    f = frame(study_date=["2020-01-02", "2020-01-01", "2020-01-02"], offset=[9.0, 0.0, 3.0])
    order, key, _, notes = order_studies(f)
    assert key == "study_date" and order.tolist() == [1, 2, 0] and "ties broken by offset" in notes[0]
    f = frame(study_date=["2020-01-02", None, "2020-01-01"], offset=[5.0, 1.0, 3.0])
    order, key, _, _ = order_studies(f)
    assert key == "offset" and order.tolist() == [1, 2, 0]


def test_coarse_date_gives_way_to_offset():
    # The COVID collection's year-only dates read as 1 January: one date for all, offsets differ.
    f = frame(study_date=["2020-01-01"] * 3, offset=[12.0, 5.0, 7.0])
    order, key, _, notes = order_studies(f)
    assert key == "offset" and order.tolist() == [1, 2, 0] and "coarser" in notes[0]


def test_falls_back_to_follow_up_then_file_name():
    f = frame(follow_up=[3, 1, 2])
    assert order_studies(f)[1] == "follow_up" and order_studies(f)[0].tolist() == [1, 2, 0]
    f = pd.DataFrame({"path": ["/d/x_10.png", "/d/x_2.png", "/d/x_1.png"], "patient_id": ["p"] * 3})
    order, key, _, _ = order_studies(f)
    assert key == "file_name" and order.tolist() == [2, 1, 0]  # natural order: 1, 2, 10


@pytest.mark.parametrize(
    ("series", "verdict"),
    [
        ([0.1, 0.3, 0.6], "worsening"),
        ([0.9, 0.5, 0.45, 0.2], "improving"),
        ([0.5, 0.55, 0.48, 0.52], "stable"),
        ([0.2, 0.9, 0.2], "stable"),  # a spike in the middle is no trend
        ([0.5, 0.58], "stable"),  # below the 0.1 tolerance
        ([0.5, 0.65], "worsening"),
    ],
)
def test_drift_rule(series, verdict):
    d = drift_verdict(series)
    assert d["verdict"] == verdict
    slope = np.polyfit(np.arange(len(series)), series, 1)[0]
    assert d["drift"] == pytest.approx(slope * (len(series) - 1), abs=1e-6)
    assert "0.1" in d["rule"] and "worsening" in d["rule"]


def test_single_study_has_no_drift():
    assert drift_verdict([0.4]) == {**drift_verdict([0.4]), "drift": None, "verdict": "single study"}


def test_severity_rules():
    binary = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    assert severity_from_probs(binary, np.array([[0.2], [0.9]])).tolist() == pytest.approx([0.2, 0.9])
    multi = LabelSpace(TaskType.MULTICLASS, ("COVID-19", "NORMAL", "PNEUMONIA"))
    assert severity_from_probs(multi, np.array([[0.1, 0.7, 0.2]])).tolist() == pytest.approx([0.3])
    ml = LabelSpace(TaskType.MULTILABEL, ("Effusion", "No Finding", "Mass"))
    assert severity_from_probs(ml, np.array([[0.3, 0.9, 0.6]])).tolist() == pytest.approx([0.6])


def test_build_timeline_groups_images_of_one_study():
    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    f = frame(offset=[10.0, 0.0, 10.0, 20.0], study_date=[None] * 4)
    table = CxrTable(f, np.zeros((4, 2)), space)
    probs = np.array([[0.5], [0.1], [0.7], [0.9]])
    tl = build_timeline(table, np.arange(4), probs, space)
    assert tl["ordered_by"] == "offset" and tl["n_studies"] == 3 and tl["n_images"] == 4
    assert [s["offset"] for s in tl["studies"]] == [0.0, 10.0, 20.0]
    assert [s["severity"] for s in tl["studies"]] == pytest.approx([0.1, 0.6, 0.9])
    assert tl["studies"][1]["probabilities"] == pytest.approx({"NORMAL": 0.4, "PNEUMONIA": 0.6})
    assert tl["verdict"] == "worsening" and tl["drift"] == pytest.approx(0.8)


def test_partial_offsets_are_used_and_a_prior_image_goes_first():
    """One study lacks an offset (issue 12, item 11): the others keep their offset order, the name says 'prior'."""
    f = pd.DataFrame(
        {
            "path": [f"/d/case-58-{n}.jpg" for n in ("prior", "day-3", "day-10", "day-7")],
            "patient_id": ["p"] * 4,
            "offset": [None, 3.0, 10.0, 7.0],
        }
    )
    order, key, values, notes = order_studies(f)
    assert key == "offset" and order.tolist() == [0, 1, 3, 2]
    assert values[0] == (None, "case-58-prior.jpg") and [v[0] for v in values[1:]] == [3.0, 7.0, 10.0]
    assert any("1 image(s) without an offset" in n and "'prior'" in n for n in notes)


def test_rows_without_the_key_are_kept_last_never_dropped_and_the_rule_is_reported():
    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    f = frame(offset=[5.0, None, 1.0, None])
    f["path"] = ["/d/a.png", "/d/z_unknown.png", "/d/b.png", "/d/m_unknown.png"]
    tl = build_timeline(
        CxrTable(f, np.zeros((4, 2)), space), np.arange(4), np.array([[0.1], [0.2], [0.3], [0.4]]), space
    )
    assert tl["n_images"] == 4 and tl["n_studies"] == 4  # two rows without an offset are two studies, not one
    assert [s["images"][0].rsplit("/", 1)[1] for s in tl["studies"]] == [
        "b.png", "a.png", "m_unknown.png", "z_unknown.png"
    ]  # fmt: skip
    assert [s["order_basis"] for s in tl["studies"]] == [
        "offset",
        "offset",
        "file name (no offset)",
        "file name (no offset)",
    ]
    assert "offset" in tl["order_rule"] and "placed last" in " ".join(tl["ordering_notes"])


def test_most_complete_key_wins_when_none_is_complete():
    f = frame(study_date=["2020-05-01", None, None, None], offset=[None, 4.0, 2.0, 9.0])
    order, key, _, notes = order_studies(f)
    assert key == "offset" and order.tolist()[:3] == [2, 1, 3] and order.tolist()[3] == 0
    assert any("1 image(s) without an offset" in n for n in notes)


@pytest.mark.parametrize(
    "dates",
    [
        [f"2024-03-{d:02d}" for d in range(1, 30, 3)],  # ten studies in a month
        ["2024-04-01", "2024-04-02"],  # a day apart: no hour ticks
        ["2019-01-05", "2024-06-01"],
        [f"{y}-01-01" for y in range(2000, 2024, 2)],
    ],
)
def test_timeline_date_labels_do_not_overlap(dates):
    """Issue 12, item 13: the timeline's date tick labels must not overlap."""
    from cxrkit.search.timeline import timeline_figure

    studies = [
        {"study": i + 1, "order_value": d, "severity": 0.5, "probabilities": {"NORMAL": 0.5, "PNEUMONIA": 0.5}}
        for i, d in enumerate(dates)
    ]
    fig = timeline_figure({"ordered_by": "study_date", "patient_id": "P", "verdict": "stable", "studies": studies})
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].get_xticklabels() if t.get_visible() and t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert len(boxes) >= 2
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]), [t.get_text() for t in labels]
    assert not any(":" in t.get_text() or " " in t.get_text() for t in labels)  # whole days, no hours
