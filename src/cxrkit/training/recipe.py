"""Training recipes: a YAML file of nested settings, overridable with `--set key.sub=value`."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from cxrkit.core.errors import ConfigError
from cxrkit.data.augment import Augmentation


@dataclass
class DataSpec:
    sources: list[str] = field(default_factory=list)  # dataset paths or manifests; PATH::A,B selects classes
    format: str | None = None
    views: list[str] | None = None  # COVID collection view filter (None: the adapter's default)
    task: str | None = None  # override the inferred task
    val: float = 0.15
    test: float = 0.0  # the recipes' test data is a separate set; 0 keeps all patients for train/val
    seed: int = 0
    keep_existing_splits: bool = False  # trust the source's train/val(/test) columns or folders
    per_class: int | None = None  # undersample to N images per class before splitting
    balance: str = "weights"  # weights | sampler (classes) | source (every source, and class within it) | none
    harmonise: bool = False  # relabel every source to one multi-label vocabulary (cxrkit.data.harmonise)
    covid_is_pneumonia: bool = True  # harmonised: COVID-19 positive rows are Pneumonia positive too
    validation: str = "split"  # split: patient split (val/test); loso: leave-one-source-out folds
    val_source: str | None = None  # validate on this one source, train on all the others
    source_column: str = "source"  # the column that names a row's source (hospital, collection)
    loso_final: bool = True  # loso: after the folds, fit one model on every source (the shipped one)


@dataclass
class ModelSpec:
    arch: str = "efficientnet_lite0"
    weights: str = "imagenet"  # imagenet | none | PATH
    drop_rate: float | None = 0.2
    image_size: int = 224
    resize: str = "squash"
    features: str = "pixels"  # classical baselines: pixels | embeddings
    k: int = 15  # KNN neighbours
    embed_arch: str = "efficientnet_lite0"  # classical baselines on embeddings
    tta: str = "none"  # none | hflip: test-time augmentation, recorded in the bundle; every inference applies it


@dataclass
class TrainSpec:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1  # after unfreezing, the backbone learns at lr * this
    optimizer: str = "adamw"  # adamw | adam | rmsprop | sgd
    weight_decay: float = 1e-4
    freeze_epochs: int = 0  # epochs training only the new head before full fine-tuning
    scheduler: str = "cosine"  # cosine | none
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    patience: int = 3  # early stopping on the monitored metric
    monitor: str = "val_auroc"
    num_workers: int = 2
    precision: str = "32-true"  # or bf16-mixed
    channels_last: bool = True
    seed: int = 0
    max_minutes: float | None = None
    limit_train_batches: float | int | None = None  # tests and smoke runs
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"  # auto | cpu | gpu
    compile: bool = False  # torch.compile the model (worth it on a GPU; compiling costs a minute or two)
    mixup: float = 0.0  # mixup Beta(alpha, alpha); 0: off (an entry unknown in either image leaves the loss)
    cutmix: float = 0.0  # cutmix Beta(alpha, alpha); 0: off (with both, each batch picks one)
    mix_prob: float = 1.0  # probability that a batch is mixed
    ema: float = 0.0  # decay of an exponential moving average of the weights (e.g. 0.999); 0: off
    distill_from: list[str] = field(default_factory=list)  # teacher bundles (an ensemble): distil into this model
    distill_alpha: float = 0.5  # weight of the teacher's soft targets in the loss (the rest: the labels)
    distill_temperature: float = 1.0  # softening of teacher and student logits


@dataclass
class PreprocessSpec:
    """Lung-aware preprocessing, recorded in the bundle and applied identically at inference."""

    lungs: str | None = None  # null | crop (to the lung box grown by margin) | mask (blank outside the lungs)
    margin: float = 0.1
    segmenter: str = "lungs"  # the segmentation bundle that finds the lungs


@dataclass
class ThresholdSpec:
    method: str = "youden"  # youden | youden_band | sensitivity
    target_sensitivity: float | None = None


@dataclass
class Recipe:
    name: str = "experiment"
    kind: str = "classification"  # classification | segmentation
    out: str = "runs/{name}"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    augment: Augmentation = field(default_factory=Augmentation)  # the one spec, in cxrkit.data.augment
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    threshold: ThresholdSpec = field(default_factory=ThresholdSpec)
    license: str = "See the training data's license."
    notes: str = ""

    @property
    def out_dir(self) -> Path:
        return Path(self.out.format(name=self.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"Unknown recipe key(s) {[f'{where}{k}' for k in unknown]}; valid under {where or 'top level'}: {sorted(known)}."
        )
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else None  # type: ignore[misc]
        if is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _build(type(default), value, f"{where}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, 'null' -> None, '[a, b]' -> list; else the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply 'a.b=value' strings to a nested dict (values parsed as YAML)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value (e.g. train.epochs=3), got {item!r}.")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section.")
        node[parts[-1]] = _parse_value(value)
    return out


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML (or start from defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file. Recipes live in recipes/*.yaml.")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e}).") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of sections (data, model, train ...).")
        raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides or [])
    recipe = _build(Recipe, raw, "")
    _validate(recipe)
    return recipe


def _validate(r: Recipe) -> None:
    if not r.data.sources:
        raise ConfigError("The recipe names no data: set data.sources to a list of dataset paths or manifests.")
    if r.kind not in ("classification", "segmentation"):
        raise ConfigError(f"kind must be classification or segmentation; got {r.kind!r}.")
    if r.data.balance not in ("weights", "sampler", "source", "none"):
        raise ConfigError(f"data.balance must be weights, sampler, source or none; got {r.data.balance!r}.")
    if r.train.optimizer not in ("adamw", "adam", "rmsprop", "sgd"):
        raise ConfigError(f"train.optimizer must be adamw, adam, rmsprop or sgd; got {r.train.optimizer!r}.")
    if r.threshold.method not in ("youden", "youden_band", "sensitivity"):
        raise ConfigError(f"threshold.method must be youden, youden_band or sensitivity; got {r.threshold.method!r}.")
    if r.threshold.method == "sensitivity" and r.threshold.target_sensitivity is None:
        raise ConfigError("threshold.method 'sensitivity' needs threshold.target_sensitivity (e.g. 0.95).")
    if r.data.validation not in ("split", "loso"):
        raise ConfigError(f"data.validation must be split or loso; got {r.data.validation!r}.")
    if r.data.validation == "loso" and (r.train.num_nodes > 1 or str(r.train.devices) != "1"):
        raise ConfigError("data.validation: loso runs its folds one after another in one process; set train.devices=1.")
    if r.data.validation == "loso" and r.data.val_source:
        raise ConfigError("data.val_source holds out one source; data.validation: loso holds out each. Set one.")
    if r.model.tta not in ("none", "hflip"):
        raise ConfigError(f"model.tta must be none or hflip; got {r.model.tta!r}.")
    if r.train.mixup < 0 or r.train.cutmix < 0 or not 0 <= r.train.mix_prob <= 1:
        raise ConfigError(
            "train.mixup and train.cutmix are Beta alphas (>= 0, e.g. 0.2 and 1.0); mix_prob is in [0, 1]."
        )
    if not (r.train.ema == 0 or 0 < r.train.ema < 1):
        raise ConfigError(f"train.ema is a decay in (0, 1), e.g. 0.999, or 0 (off); got {r.train.ema}.")
    if not 0 <= r.train.distill_alpha <= 1 or r.train.distill_temperature <= 0:
        raise ConfigError("train.distill_alpha must be in [0, 1] and train.distill_temperature > 0.")
    if isinstance(r.train.distill_from, str):
        r.train.distill_from = [r.train.distill_from]
    if r.train.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, got {r.train.epochs}.")
