"""Model bundles: a trained model as a folder that loads with no flags.

Layout::

    <bundle>/
      model.safetensors   the state dict (never a pickle)
      config.json         architecture + kwargs, label space, preprocessing, thresholds, metrics,
                          data summary, license, code version, created time, weights sha256
      MODEL_CARD.md       generated from config.json

Bundles are found by ``resolve_bundle``: an existing path, else a bundle shipped inside the package
(``cxrkit/models/shipped/<name>/``), else ``$CXRKIT_HOME/models/<name>/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import cxrkit
from cxrkit.core.decisions import multiclass_thresholds
from cxrkit.core.errors import BundleError, ConfigError, CxrkitError, UnknownNameError
from cxrkit.core.files import atomic_dir, sha256_file
from cxrkit.core.jsonable import json_text
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.settings import DEFAULT_MODEL_ENV, cxrkit_home, default_model_setting
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.models.card import render_model_card
from cxrkit.models.intended import IntendedInput
from cxrkit.models.records import CARD_FILE, CONFIG_FILE, images_config, read_split_record, write_split_record
from cxrkit.models.registry import create_model, get_model_info

WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "shipped"
# The default model when $CXRKIT_DEFAULT_MODEL is unset, first one present wins: the multi-source 'all'
# model, else the pneumonia model (frontal CXRs, the widest-tested binary call). Declared, never alphabetical.
DEFAULT_BUNDLES = ("all", "pneumonia")
_REQUIRED = ("architecture", "label_space", "preprocessing", "weights_sha256")


@dataclass
class Bundle:
    """A loaded bundle. ``model`` is in eval mode on the CPU."""

    path: Path
    model: nn.Module
    architecture: str
    model_kwargs: dict[str, Any]
    label_space: LabelSpace
    preprocessing: Preprocessing
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    data_summary: dict[str, Any]
    license: str
    code_version: str
    created: str
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)
    intended_input: IntendedInput | None = None  # what images it was made for (uploads outside it warn)
    images: dict[str, Any] = field(default_factory=dict)  # config 'images': the split record's description
    evaluations: dict[str, Any] = field(default_factory=dict)  # config 'evaluations' (cxr evaluate --record)

    def split_record(self) -> dict[str, np.ndarray] | None:
        """Hashes of the training/validation images (None for bundles saved before splits were recorded)."""
        return read_split_record(self.path) if self.images else None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label_space.classes


def normalise_thresholds(
    thresholds: Mapping[str, float] | Sequence[float] | float | None, label_space: LabelSpace
) -> dict[str, float]:
    """Per-output thresholds as ``{class: value}`` (binary: one entry, the positive class).

    ``None`` means 0.5 for every output. A sequence is aligned with the outputs. Multiclass: ``{}`` (arg-max)
    or one operating class, ``{class: value}`` (see :mod:`cxrkit.core.decisions`).
    """
    if label_space.task is TaskType.MULTICLASS:
        return multiclass_thresholds(thresholds, label_space)
    outputs = [label_space.positive] if label_space.task is TaskType.BINARY else list(label_space.classes)
    if thresholds is None:
        values = dict.fromkeys(outputs, 0.5)
    elif isinstance(thresholds, int | float):
        values = dict.fromkeys(outputs, float(thresholds))
    elif isinstance(thresholds, Mapping):
        values = {label_space.classes[label_space.index(k)]: float(v) for k, v in thresholds.items()}
        unknown = [k for k in values if k not in outputs]
        if unknown:
            raise ConfigError(f"Thresholds for {unknown} but the model's outputs are {outputs}.")
        values = {k: values.get(k, 0.5) for k in outputs}
    else:
        seq = [float(t) for t in np.asarray(thresholds, dtype=float).ravel()]
        if len(seq) != len(outputs):
            raise ConfigError(f"{len(seq)} thresholds given for {len(outputs)} outputs {outputs}.")
        values = dict(zip(outputs, seq, strict=True))
    bad = {k: v for k, v in values.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
    if bad:
        raise ConfigError(f"Thresholds must be probabilities in [0, 1]; got {bad}.")
    return values


def _default_model_kwargs(model: nn.Module, arch: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if get_model_info(arch).family == "small_cnn":
        kwargs["image_size"] = int(model.image_size)
    return kwargs


def _checked_state(
    model: nn.Module, arch: str, label_space: LabelSpace, in_chans: int, kwargs: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The model's weights on the CPU, checked now (not at load time) to be what ``arch`` + ``kwargs`` rebuild."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with torch.device("meta"):
        probe = create_model(arch, label_space, in_chans=in_chans, weights="none", **kwargs)
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))[:5]
        raise ConfigError(
            f"The model does not match create_model({arch!r}, {label_space.task.value} with "
            f"{label_space.num_outputs} outputs, in_chans={in_chans}, {kwargs}); differing "
            f"keys/shapes include {diff}. Fix: pass the right arch, model_kwargs or preprocessing.in_chans."
        )
    return state


def save_bundle(
    out_dir: str | Path,
    model: nn.Module,
    arch: str,
    label_space: LabelSpace,
    preprocessing: Preprocessing,
    thresholds: Mapping[str, float] | Sequence[float] | float | None,
    metrics: Mapping[str, Any],
    data_summary: Mapping[str, Any],
    license: str,
    extra: Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    intended_input: IntendedInput | None = None,
    images: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a bundle folder atomically (a reader never sees a half-written bundle).

    Args:
        out_dir: bundle folder; replaced if it exists.
        model: the trained model (any device).
        arch: its registry name (``create_model(arch, ...)`` must rebuild it).
        label_space: task and classes, in output order.
        preprocessing: how inputs were prepared (its ``in_chans`` is the model's input channels).
        thresholds: per-class decision thresholds (see ``normalise_thresholds``).
        metrics: validation metrics (JSON-serialisable; numpy scalars are fine).
        data_summary: training data description: dataset name, source, counts, ``splits``...
        license: license of the training data / weights, as text.
        extra: anything else to keep in ``config.json`` (shown in the model card).
        model_kwargs: extra ``create_model`` kwargs (``image_size`` of the small CNNs is filled in).
        intended_input: the images the model is made for (sizes; uploads outside them get a warning).
        images: the split record (``cxrkit.data.fingerprint.split_record``): hashes of the training and
            validation images, written to ``images.npz`` (see ``cxrkit.models.records``).

    Returns:
        The bundle path.

    Raises:
        ConfigError: the model does not match ``arch``/``model_kwargs`` or a value is not JSON-safe.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    kwargs = {**_default_model_kwargs(model, arch), **dict(model_kwargs or {})}
    state = _checked_state(model, arch, label_space, preprocessing.in_chans, kwargs)
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "model_kwargs": kwargs,
        "label_space": label_space.to_dict(),
        "preprocessing": preprocessing.to_dict(),
        "thresholds": normalise_thresholds(thresholds, label_space),
        "metrics": dict(metrics or {}),
        "data_summary": dict(data_summary or {}),
        "license": license,
        "code_version": cxrkit.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    if intended_input is not None:
        config["intended_input"] = intended_input.to_dict()
    if images is not None:
        config["images"] = images_config(images)
    with atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "architecture": arch})
        if images is not None:
            write_split_record(tmp, images)
        config["weights_sha256"] = sha256_file(tmp / WEIGHTS_FILE)
        try:
            text = json_text(config)
        except TypeError as err:
            raise ConfigError(f"Bundle config is not JSON-serialisable: {err}.") from err
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
        (tmp / CARD_FILE).write_text(render_model_card(json.loads(text)), encoding="utf-8")
    return out_dir


def _read_config(path: Path) -> dict[str, Any]:
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise BundleError(
            f"Bundle {path} has no {CONFIG_FILE}. Fix: point at a folder written by save_bundle "
            "(it holds model.safetensors, config.json and MODEL_CARD.md), or re-export the model."
        )
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(
            f"{cfg_path} is not valid JSON ({err}). Fix: restore the file from the original bundle or re-export it."
        ) from err
    if not isinstance(config, dict):
        raise BundleError(f"{cfg_path} must hold a JSON object. Fix: re-export the bundle.")
    if config.get("kind") == "segmentation":
        raise BundleError(
            f"{path} is a segmentation model, not a classifier. Fix: use it with `cxr segment --model {path.name}` "
            "(or cxrkit.models.segmentation.load_segmenter), or pick a classifier bundle."
        )
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise BundleError(f"{cfg_path} lacks required fields {missing}. Fix: re-export the bundle with save_bundle.")
    return config


def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle folder (or a name: see ``resolve_bundle``); the model is returned in eval mode.

    Raises:
        BundleError: a file is missing, ``config.json`` is not valid, the weights' sha256 differs from
            the recorded one, or the weights do not fit the recorded architecture. The message names
            the file and the fix.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_bundle(path)
    config = _read_config(path)
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise BundleError(f"Bundle {path} has no {WEIGHTS_FILE}. Fix: copy the complete bundle folder.")
    digest = sha256_file(weights_path)
    if digest != config["weights_sha256"]:
        raise BundleError(
            f"{weights_path} has sha256 {digest} but {CONFIG_FILE} records {config['weights_sha256']}: the "
            "weights were changed or corrupted. Fix: restore the original file, or re-export the bundle."
        )
    try:
        label_space = LabelSpace.from_dict(config["label_space"])
        preprocessing = Preprocessing.from_dict(config["preprocessing"])
        kwargs = dict(config.get("model_kwargs") or {})
        model = create_model(
            config["architecture"], label_space, in_chans=preprocessing.in_chans, weights="none", **kwargs
        )
    except (CxrkitError, KeyError, TypeError, ValueError) as err:
        raise BundleError(
            f"{path / CONFIG_FILE} describes a model cxrkit cannot build ({err}). Fix: check 'architecture', "
            "'model_kwargs', 'label_space' and 'preprocessing', or upgrade cxrkit to the version that wrote it "
            f"({config.get('code_version')})."
        ) from err
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(
            f"{weights_path} is not a readable safetensors file ({err}). Fix: re-export the bundle."
        ) from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BundleError(
            f"{weights_path} does not fit architecture {config['architecture']!r} with {label_space.num_outputs} "
            f"outputs as recorded in {CONFIG_FILE}: {str(err)[:400]}. Fix: the weights "
            "and config.json come from different models; re-export the bundle."
        ) from err
    model.eval()
    return Bundle(
        path=path,
        model=model,
        architecture=config["architecture"],
        model_kwargs=kwargs,
        label_space=label_space,
        preprocessing=preprocessing,
        thresholds=_read_thresholds(config.get("thresholds"), label_space, path / CONFIG_FILE),
        metrics=dict(config.get("metrics") or {}),
        data_summary=dict(config.get("data_summary") or {}),
        license=str(config.get("license", "")),
        code_version=str(config.get("code_version", "")),
        created=str(config.get("created", "")),
        fingerprint=digest,
        extra=dict(config.get("extra") or {}),
        intended_input=IntendedInput.from_dict(config.get("intended_input"), str(path / CONFIG_FILE)),
        images=dict(config.get("images") or {}),
        evaluations=dict(config.get("evaluations") or {}),
    )


def _read_thresholds(raw: Any, label_space: LabelSpace, where: Path) -> dict[str, float]:
    """config.json's thresholds, checked on load: ``{class: probability}`` with classes of the model.

    Raises:
        BundleError: not a mapping, an unknown class, or a value that is not a number in [0, 1] (e.g. "high").
    """
    if raw is None:
        return {}
    fix = f'Fix: edit "thresholds" in {where} to {{class: probability in [0, 1]}}, e.g. {{"PNEUMONIA": 0.5}}.'
    if not isinstance(raw, Mapping):
        raise BundleError(f"{where}: 'thresholds' must map class names to probabilities, got {raw!r}. {fix}")
    out: dict[str, float] = {}
    for k, v in raw.items():
        if k not in label_space.classes:
            raise BundleError(
                f"{where}: a threshold for {k!r}, which is not a class {list(label_space.classes)}. {fix}"
            )
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0
        if not ok:
            raise BundleError(f"{where}: the threshold of {k!r} is {v!r}, not a probability in [0, 1]. {fix}")
        out[k] = float(v)
    if label_space.task is TaskType.MULTICLASS:
        try:
            return multiclass_thresholds(out, label_space)
        except ConfigError as err:
            raise BundleError(f"{where}: {err}") from None
    return out


def _bundle_roots() -> list[Path]:
    return [SHIPPED_DIR, cxrkit_home() / "models"]


def _bundle_kind(folder: Path) -> str:
    try:
        kind = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("kind", "classifier")
    except (OSError, ValueError, AttributeError):
        return "classifier"  # unreadable: listed, so that loading it reports what is wrong
    return str(kind)


def list_bundles(kind: str = "classifier") -> list[str]:
    """Names of bundles shipped with cxrkit or installed under ``$CXRKIT_HOME/models``.

    ``kind``: "classifier" (what predict/serve load), "segmentation" (e.g. ``lungs``) or "all".
    """
    names: set[str] = set()
    for root in _bundle_roots():
        if root.is_dir():
            names.update(
                p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file() and kind in ("all", _bundle_kind(p))
            )
    return sorted(names)


def resolve_bundle(name_or_path: str | Path) -> Path:
    """Find a bundle folder: an existing path, else ``shipped/<name>``, else ``$CXRKIT_HOME/models/<name>``.

    Raises:
        BundleError: a path-like argument (with a separator) that does not exist.
        UnknownNameError: a bare name that is no known bundle (lists the available ones).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise BundleError(f"{path} is a file; a bundle is a folder holding {WEIGHTS_FILE} and {CONFIG_FILE}.")
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text:
        raise BundleError(
            f"Bundle folder {path} does not exist. Fix: check the path, or use a bundle name from "
            f"{list_bundles() or '(none installed)'}."
        )
    for root in _bundle_roots():
        candidate = root / text
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise UnknownNameError("bundle", text, list_bundles())


def default_bundle() -> str:
    """The default model: ``$CXRKIT_DEFAULT_MODEL``, else the first of ``DEFAULT_BUNDLES`` that is installed.

    Raises:
        UnknownNameError: ``$CXRKIT_DEFAULT_MODEL`` names no bundle (the message names the variable).
        BundleError: none of ``DEFAULT_BUNDLES`` is installed (the message says how to choose one).
    """
    declared = default_model_setting()
    if declared is not None:
        try:
            resolve_bundle(declared)
        except UnknownNameError as err:
            raise UnknownNameError(f"bundle (from ${DEFAULT_MODEL_ENV})", declared, list_bundles()) from err
        return declared
    names = list_bundles()
    for name in DEFAULT_BUNDLES:
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    raise BundleError(
        f"No default model: none of {list(DEFAULT_BUNDLES)} is installed (available: {names or 'none'}). "
        f"Fix: pass --model NAME, or set {DEFAULT_MODEL_ENV}=NAME."
    )
