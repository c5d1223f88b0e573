"""MODEL_CARD.md generation for model bundles (Mitchell et al., "Model Cards for Model Reporting")."""

from __future__ import annotations

import json
from collections.abc import Mapping


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _table(rows: Mapping[str, object], header: tuple[str, str]) -> str:
    if not rows:
        return "_not recorded_\n"
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def render_model_card(config: Mapping[str, object]) -> str:
    """Markdown model card from a bundle's ``config.json`` contents."""
    ls = config["label_space"]
    pre = config["preprocessing"]
    data = dict(config.get("data_summary") or {})
    metrics = dict(config.get("metrics") or {})
    thresholds = dict(config.get("thresholds") or {})
    splits = data.pop("splits", None)
    classes = ", ".join(ls["classes"])
    positive = f" The output is the probability of **{ls['classes'][1]}**." if ls["task"] == "binary" else ""
    parts = [
        f"# Model card: {config.get('name') or config['architecture']}\n",
        "## Model details\n",
        f"- Architecture: `{config['architecture']}` (kwargs: `{json.dumps(config.get('model_kwargs') or {})}`)",
        f"- Task: {ls['task']}; classes: {classes}.{positive}",
        f"- Input: {pre['in_chans']}-channel {pre['image_size']}x{pre['image_size']} image, resize "
        f"'{pre['resize']}', normalised with mean {pre['mean']} and std {pre['std']} after scaling to [0, 1].",
        f"- Created: {config.get('created')} with cxrkit {config.get('code_version')}",
        f"- Weights: `model.safetensors`, sha256 `{config.get('weights_sha256')}`",
        "",
        "## Intended use\n",
        "For research and education on chest X-ray classification only. **This is not a medical device**: "
        "it is not cleared or approved by any regulator, must not be used for diagnosis, triage or any "
        "clinical decision, and its outputs need review by qualified clinicians in any real-world setting.",
        "",
        "## Training data\n",
        _table({k: v for k, v in data.items()}, ("Item", "Value")),
        f"Data license: {config.get('license') or '_not recorded_'}\n",
    ]
    if splits is not None:
        parts += [
            "### Splits\n",
            _table(dict(splits) if isinstance(splits, Mapping) else {"splits": splits}, ("Split", "Images")),
        ]
    parts += [
        "## Validation metrics\n",
        _table(metrics, ("Metric", "Value")),
        "## Decision thresholds\n",
        _table(thresholds, ("Class", "Threshold")),
        "## Limitations\n",
        "- Trained on the data above only; performance on other hospitals, scanners, populations, views or "
        "image processing is unknown and usually lower (dataset shift).",
        "- Public CXR labels are often mined from reports by NLP and are noisy; the model learns their errors.",
        "- Models can use shortcuts (text markers, devices, view, image source) instead of pathology; check "
        "saliency maps and external validation before trusting a result.",
        "- Thresholds were chosen on the validation split and may not transfer to other prevalences.",
        "- Probabilities may be miscalibrated.",
        "",
    ]
    extra = config.get("extra")
    if extra:
        parts += ["## Additional information\n", _table(dict(extra), ("Item", "Value"))]
    return "\n".join(parts)
