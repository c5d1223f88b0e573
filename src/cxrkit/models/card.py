"""MODEL_CARD.md generation for model bundles (Mitchell et al., "Model Cards for Model Reporting")."""

from __future__ import annotations

import json
from collections.abc import Mapping

from cxrkit.core.decisions import multiclass_thresholds
from cxrkit.core.task import LabelSpace
from cxrkit.models.card_audit import AUDIT_KEY, audit_section, audit_warning
from cxrkit.models.card_evaluations import evaluation_sections


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


_PER_ITEM = ("per_label", "per_class", "per_source")
_SKIP = ("classes", "calibration", "accuracy_vs_threshold", "bootstrap", "confusion_matrix")


def _with_ci(metrics: Mapping[str, object], key: str) -> object:
    value, ci = metrics.get(key), metrics.get(f"{key}_ci")
    if isinstance(value, float) and isinstance(ci, list | tuple) and len(ci) == 2 and None not in ci:
        return f"{value:.4g} [{ci[0]:.3g}, {ci[1]:.3g}]"
    return value


def _metrics_section(name: str, metrics: Mapping[str, object]) -> list[str]:
    """Headline metrics (95% CIs inline) and, for multi-class/multi-label, one row per class."""
    if not isinstance(metrics, Mapping):
        return [_table({name: metrics}, ("Metric", "Value"))]
    head = {
        k: _with_ci(metrics, k)
        for k, v in metrics.items()
        if k not in _SKIP and k not in _PER_ITEM and not k.endswith("_ci") and not isinstance(v, Mapping | list)
    }
    out = [f"### {name}\n", _table(head, ("Metric", "Value"))]
    for key in _PER_ITEM:
        items = metrics.get(key)
        if not isinstance(items, Mapping) or not items:
            continue
        cols = [
            c
            for c in (
                "n_positive",
                "support",
                "auroc",
                "threshold",
                "precision",
                "recall",
                "sensitivity",
                "specificity",
                "f1",
            )
            if any(isinstance(v, Mapping) and c in v for v in items.values())
        ]
        lines = [f"| {key.replace('_', ' ')} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for cls, row in items.items():
            row = row if isinstance(row, Mapping) else {}
            lines.append(
                f"| {cls} | "
                + " | ".join(_fmt(_with_ci(row, c)) if row.get(c) is not None else "-" for c in cols)
                + " |"
            )
        out.append("\n".join(lines) + "\n")
    out += _operating_point_lines(metrics)
    return out


_OPERATING_COLUMNS = ("n", "n_positive", "threshold", "auroc", "sensitivity", "specificity", "ppv", "npv")


def _operating_point_lines(metrics: Mapping[str, object]) -> list[str]:
    """A multiclass operating class against the rest, at its threshold (``operating_point*`` entries)."""
    rows = {k: v for k, v in metrics.items() if k.startswith("operating_point") and isinstance(v, Mapping)}
    if not rows:
        return []
    lines = [
        "| operating point | " + " | ".join(_OPERATING_COLUMNS) + " |",
        "|---" * (len(_OPERATING_COLUMNS) + 1) + "|",
    ]
    for key, row in rows.items():
        name = f"{row.get('class')} vs rest" + key.removeprefix("operating_point").replace("_", ", ")
        cells = (_fmt(_with_ci(row, c)) if row.get(c) is not None else "-" for c in _OPERATING_COLUMNS)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return ["\n".join(lines) + "\n"]


def _intended_input_lines(intended: object) -> list[str]:
    if not isinstance(intended, Mapping):
        return []
    lo, hi = intended.get("min_side"), intended.get("max_side")
    sides = ", ".join(
        t for t in (f"shorter side >= {lo} px" if lo else "", f"longer side <= {hi} px" if hi else "") if t
    )
    text = f"Intended input: {intended.get('description') or 'not described'}" + (f" ({sides})" if sides else "")
    return [text + ". Images outside it are analysed with a warning.", ""]


_PRECISION = {
    "bf16": (
        "### bf16 check (validation AUROC and decisions, bf16 autocast vs fp32)\n",
        "bf16 is used where the hardware has it natively",
        "fp32 is kept: bf16 changed the validation AUROC or the decisions too much",
    ),
    "int8": (
        "### INT8 check (validation AUROC and decisions, ONNX Runtime INT8 vs fp32)\n",
        "`--backend onnx-int8` may be used (model.int8.onnx)",
        "INT8 is refused (`--backend onnx-int8` fails): it changed the validation AUROC or the decisions too much",
    ),
}


def _precision_sections(checks: Mapping[str, object]) -> list[str]:
    parts: list[str] = []
    for name, (title, passed, refused) in _PRECISION.items():
        check = checks.get(name)
        if not isinstance(check, Mapping) or not check:
            continue
        ok = check.get("ok")
        verdict = passed if ok else ("not checked" if ok is None else refused)
        parts += [title, _table(check, ("Item", "Value")), f"Result: {verdict}.\n"]
    return parts


def _decision_lines(label_space: Mapping[str, object], thresholds: dict[str, float]) -> list[str]:
    """How the model decides: a threshold table, with the multiclass rule in words (cxrkit.core.decisions)."""
    if label_space["task"] != "multiclass":
        return [_table(thresholds, ("Class", "Threshold"))]
    chosen = multiclass_thresholds(thresholds, LabelSpace.from_dict(dict(label_space)))
    if not chosen:
        return ["The most probable class (arg-max); no threshold.\n"]
    ((name, value),) = chosen.items()
    return [
        f"**{name}** whenever its probability is at least {value:.4g} (a one-vs-rest operating point); "
        "otherwise the most probable of the other classes.\n"
    ]


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
    audit = (config.get("extra") or {}).get(AUDIT_KEY)
    parts = [
        f"# Model card: {config.get('name') or config['architecture']}\n",
        *audit_warning(audit),
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
        *_intended_input_lines(config.get("intended_input")),
        "## Training data\n",
        _table({k: v for k, v in data.items()}, ("Item", "Value")),
        f"Data license: {config.get('license') or '_not recorded_'}\n",
    ]
    if splits is not None:
        parts += [
            "### Splits\n",
            _table(dict(splits) if isinstance(splits, Mapping) else {"splits": splits}, ("Split", "Images")),
        ]
    parts.append("## Validation metrics\n")
    if not metrics:
        parts.append("_not recorded_\n")
    for name, values in metrics.items():
        parts += _metrics_section(name, values)
    parts += evaluation_sections(config)
    extra = dict(config.get("extra") or {})
    extra.pop(AUDIT_KEY, None)
    recipe = extra.pop("recipe", None)
    parts += _precision_sections(extra.pop("precision_check", None) or {})
    parts += audit_section(audit)
    parts += [
        "## Decision thresholds\n",
        *_decision_lines(ls, thresholds),
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
    notes = (recipe or {}).get("notes") if isinstance(recipe, Mapping) else None
    if notes:
        parts[-1:-1] = [f"- {line.strip()}" for line in str(notes).strip().splitlines() if line.strip()]
    if extra:
        parts += ["## Additional information\n", _table(extra, ("Item", "Value"))]
    if recipe:
        parts += [
            "## Recipe (reproduces this bundle with `cxr train`)\n",
            "```json",
            json.dumps(recipe, indent=2),
            "```",
            "",
        ]
    return "\n".join(parts)
