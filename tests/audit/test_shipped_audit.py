"""The audit on a shipped model and real data: covid3's training data is confounded by source, and it shows."""

from __future__ import annotations

import pytest
import torch

from cxrkit.audit import AuditOptions, run_audit
from cxrkit.models.engine import InferenceOptions


@pytest.mark.real_data
@pytest.mark.slow
def test_covid3_audit_flags_source_confounding(shared_data):
    torch.set_num_threads(2)
    result = run_audit(
        "covid3",
        [f"{shared_data}/covid-chestxray::COVID-19", f"{shared_data}/kaggle-pneumonia/train"],
        lungs="prior",
        options=AuditOptions(max_per_source=30, cam_per_class=3),
        inference=InferenceOptions(num_workers=0, precision="fp32"),
    )
    s = result.summary
    assert s["data"]["n_images"] == 60 and s["lung_masks"]["name"] == "prior"
    c = s["checks"]
    # every COVID-19 image comes from the collection, every other one from Kaggle: the source is the label
    assert c["confounding"]["status"] == "fail" and c["confounding"]["per_class"]["COVID-19"] > 0.95
    assert c["source_probe"]["attributes"]["source"]["auroc"] > 0.9
    assert c["per_source"]["sources"]["covid-chestxray"]["auroc"] is None  # one class only
    assert s["auroc"]["full"] > 0.9
