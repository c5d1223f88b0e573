"""Training recipes: a YAML file of nested settings, overridable with `--set key.sub=value`.

Parsed by pydantic models: an unknown key or a value of the wrong type is a ``ConfigError`` that names the key,
what it takes and how to fix it, before any data is read. The ``augment`` section is the data layer's
``Augmentation`` itself (one spec), and ``model.image_size`` defaults to the registry's input size of the arch.
"""

from __future__ import annotations

import copy
import difflib
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxrkit.core.decisions import check_operating_class
from cxrkit.core.errors import ConfigError
from cxrkit.core.precision import normalise_precision
from cxrkit.core.task import LabelSpace
from cxrkit.data.augment import Augmentation

CLASSICAL = ("knn", "logreg")  # the scikit-learn baselines (cxrkit.training.classical)


class _Section(BaseModel):
    # Unknown keys are errors (a typo must not be silently ignored); numbers are fine where text is expected.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DataSpec(_Section):
    sources: list[str] = Field(default_factory=list)  # dataset paths or manifests; PATH::A,B selects classes
    format: str | None = None
    views: list[str] | None = None  # COVID collection view filter (None: the adapter's default)
    task: str | None = None  # override the inferred task
    val: float = 0.15
    test: float = 0.0  # the recipes' test data is a separate set; 0 keeps all patients for train/val
    seed: int = 0
    keep_existing_splits: bool = False  # trust the source's train/val(/test) columns or folders
    per_class: int | None = None  # undersample to N images per class before splitting
    balance: Literal["weights", "sampler", "source", "none"] = "weights"  # sampler: classes; source: each source
    harmonise: bool = False  # relabel every source to one multi-label vocabulary (cxrkit.data.harmonise)
    covid_is_pneumonia: bool = True  # harmonised: COVID-19 positive rows are Pneumonia positive too
    validation: Literal["split", "loso"] = "split"  # split: patient split (val/test); loso: leave-one-source-out
    val_source: str | None = None  # validate on this one source, train on all the others
    source_column: str = "source"  # the column that names a row's source (hospital, collection)
    loso_final: bool = True  # loso: after the folds, fit one model on every source (the shipped one)

    _one_source = field_validator("sources", "views", mode="before")(_as_list)


class ModelSpec(_Section):
    arch: str = "efficientnet_lite0"
    weights: str = "imagenet"  # imagenet | none | PATH
    drop_rate: float | None = 0.2
    image_size: int | None = None  # None: the arch's input size in the model registry
    resize: Literal["squash", "letterbox"] = "squash"
    features: Literal["pixels", "embeddings"] = "pixels"  # classical baselines
    k: int = 15  # KNN neighbours
    embed_arch: str = "efficientnet_lite0"  # classical baselines on embeddings
    tta: Literal["none", "hflip"] = "none"  # test-time augmentation, recorded in the bundle; every inference applies it


class TrainSpec(_Section):
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1  # after unfreezing, the backbone learns at lr * this
    optimizer: Literal["adamw", "adam", "rmsprop", "sgd"] = "adamw"  # built by timm (cxrkit.training.optim)
    weight_decay: float = 1e-4  # never on norm layers and biases
    freeze_epochs: int = 0  # epochs training only the new head before full fine-tuning
    scheduler: Literal["cosine", "none"] = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    patience: int = 3  # early stopping on the monitored metric
    monitor: str = "val_auroc"
    num_workers: int = 2
    precision: str = "fp32"  # fp32 | bf16 (mixed precision; the weights stay fp32). Lightning's names are read too.
    channels_last: bool = True
    seed: int = 0
    max_minutes: float | None = None
    limit_train_batches: int | float | None = None  # tests and smoke runs
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"  # auto | cpu | gpu
    plots: bool = True  # PNG plots in the run folder (validation report, learning curve); false for sweeps and tests
    compile: bool = False  # torch.compile the model (worth it on a GPU; compiling costs a minute or two)
    mixup: float = 0.0  # mixup Beta(alpha, alpha); 0: off (an entry unknown in either image leaves the loss)
    cutmix: float = 0.0  # cutmix Beta(alpha, alpha); 0: off (with both, each batch picks one)
    mix_prob: float = 1.0  # probability that a batch is mixed
    ema: float = 0.0  # decay of an exponential moving average of the weights (e.g. 0.999); 0: off
    distill_from: list[str] = Field(default_factory=list)  # teacher bundles (an ensemble): distil into this model
    distill_alpha: float = 0.5  # weight of the teacher's soft targets in the loss (the rest: the labels)
    distill_temperature: float = 1.0  # softening of teacher and student logits

    _one_teacher = field_validator("distill_from", mode="before")(_as_list)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> str:
        try:
            return normalise_precision(value)
        except ConfigError as err:
            raise ConfigError(f"train.{err} Fix: e.g. --set train.precision=bf16.") from None


class PreprocessSpec(_Section):
    """Lung-aware preprocessing and intensity equalisation, recorded in the bundle and applied identically at
    inference."""

    lungs: Literal["crop", "mask"] | None = None  # crop: to the lung box grown by margin; mask: blank outside
    margin: float = 0.1
    segmenter: str = "lungs"  # the segmentation bundle that finds the lungs
    equalize: Literal["hist", "clahe", "zscore"] | None = None  # per-image equalisation after the lung step


class ThresholdSpec(_Section):
    method: Literal["youden", "youden_band", "sensitivity"] = "youden"
    target_sensitivity: float | None = None
    # Multiclass only: the class given a one-vs-rest operating point (e.g. COVID-19 at sensitivity 0.85);
    # the other classes are decided by arg-max (cxrkit.core.decisions).
    operating_class: str | None = None

    def check(self, space: LabelSpace) -> None:
        """Fail before training when ``operating_class`` does not fit the task's label space."""
        if self.operating_class is not None:
            check_operating_class(space, self.operating_class)


class Recipe(_Section):
    name: str = "experiment"
    kind: Literal["classification", "segmentation"] = "classification"
    out: str = "runs/{name}"
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    augment: Augmentation = Field(default_factory=Augmentation)  # the one spec, in cxrkit.data.augment
    preprocess: PreprocessSpec = Field(default_factory=PreprocessSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    license: str = "See the training data's license."
    notes: str = ""

    @property
    def out_dir(self) -> Path:
        return Path(self.out.format(name=self.name))

    @model_validator(mode="after")
    def _input_size(self) -> Recipe:
        if self.model.image_size is None:
            self.model.image_size = default_image_size(self.kind, self.model)
        return self


def default_image_size(kind: str, model: ModelSpec) -> int:
    """The registry's input size for the recipe's network (classical baselines: their embedding network's)."""
    from cxrkit.models.registry import get_model_info, list_models

    arch = model.arch
    if kind == "segmentation":  # a U-Net on a registered encoder: the encoder's size
        arch = arch.removeprefix("unet_")
    elif arch in CLASSICAL:
        if model.features != "embeddings":
            return 224  # unused: pixel baselines read a fixed small side (cxrkit.training.classical)
        arch = model.embed_arch
    if kind == "segmentation" and arch not in list_models():
        return 224
    return get_model_info(arch).preprocessing.image_size


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
    recipe = parse_recipe(apply_overrides(raw, overrides or []))
    _validate(recipe)
    return recipe


def _validate(r: Recipe) -> None:
    if not r.data.sources:
        raise ConfigError("The recipe names no data: set data.sources to a list of dataset paths or manifests.")
    if r.threshold.method == "sensitivity" and r.threshold.target_sensitivity is None:
        raise ConfigError("threshold.method 'sensitivity' needs threshold.target_sensitivity (e.g. 0.95).")
    if r.data.validation == "loso" and (r.train.num_nodes > 1 or str(r.train.devices) != "1"):
        raise ConfigError("data.validation: loso runs its folds one after another in one process; set train.devices=1.")
    if r.data.validation == "loso" and r.data.val_source:
        raise ConfigError("data.val_source holds out one source; data.validation: loso holds out each. Set one.")
    if r.train.mixup < 0 or r.train.cutmix < 0 or not 0 <= r.train.mix_prob <= 1:
        raise ConfigError(
            "train.mixup and train.cutmix are Beta alphas (>= 0, e.g. 0.2 and 1.0); mix_prob is in [0, 1]."
        )
    if not (r.train.ema == 0 or 0 < r.train.ema < 1):
        raise ConfigError(f"train.ema is a decay in (0, 1), e.g. 0.999, or 0 (off); got {r.train.ema}.")
    if not 0 <= r.train.distill_alpha <= 1 or r.train.distill_temperature <= 0:
        raise ConfigError("train.distill_alpha must be in [0, 1] and train.distill_temperature > 0.")
    if r.train.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, got {r.train.epochs}.")


# -- reading a recipe ----------------------------------------------------------------------------------------

_KINDS = {
    "int": "a whole number",
    "float": "a number",
    "none": "null",
    "bool": "true or false",
    "list": "a list, e.g. [a, b]",
    "string": "text",
    "dict": "a section of keys",
    "model": "a section of keys",
    "dataclass": "a section of keys",
}


def _section_type(parts: tuple[str, ...]) -> Any:
    """The model or dataclass at ``parts`` under ``Recipe`` (None past a leaf)."""
    node: Any = Recipe
    for part in parts:
        options = _keys(node)
        if part not in options:
            return None
        node = options[part]
    return node


def _keys(node: Any) -> dict[str, Any]:
    """Field name -> annotation of a pydantic model or dataclass ({} for anything else)."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        return {name: f.annotation for name, f in node.model_fields.items()}
    if is_dataclass(node):
        hints = typing.get_type_hints(node)
        return {f.name: hints[f.name] for f in fields(node)}
    return {}


def _field_path(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The recipe key of an error location (pydantic adds union members and list indexes after it)."""
    out: list[str] = []
    node: Any = Recipe
    for part in loc:
        options = _keys(node)
        if not isinstance(part, str) or part not in options:
            break
        out.append(part)
        node = options[part]
    return tuple(out)


def _default_of(parts: tuple[str, ...]) -> Any:
    node = Recipe()
    for part in parts:
        node = getattr(node, part, None)
    return node


def _explain(err: ValidationError) -> ConfigError:
    """One ConfigError naming every bad key: unknown keys (with close names), then bad values and the fix."""
    unknown: list[str] = []
    hints: list[str] = []
    kinds: dict[str, list[str]] = {}  # key -> what it takes (a union, e.g. int | float, reports each member)
    given: dict[str, Any] = {}
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            where, key = _field_path(loc[:-1]), str(loc[-1])
            valid = sorted(_keys(_section_type(where)))
            unknown.append(".".join((*where, key)))
            close = difflib.get_close_matches(key, valid, n=1)
            prefix = ".".join(where) + "." if where else ""
            hints.append(
                (f"did you mean {prefix}{close[0]}? " if close else "")
                + f"valid under {'.'.join(where) or 'the top level'}: {valid}"
            )
            continue
        dotted = ".".join(_field_path(loc)) or "recipe"
        if e["type"] == "literal_error":
            kind = str(e.get("ctx", {}).get("expected", "")).replace("'", "")
        else:
            kind = _KINDS.get(e["type"].split("_")[0], e["msg"].removeprefix("Input should be ").lower())
        if kind not in kinds.setdefault(dotted, []):
            kinds[dotted].append(kind)
        given.setdefault(dotted, e["input"])
    messages = []
    if unknown:
        messages.append(f"Unknown recipe key(s) {unknown}; " + "; ".join(hints) + ".")
    for dotted, what in kinds.items():
        example = _default_of(tuple(dotted.split(".")))
        plain = example is not None and not isinstance(example, dict | list | BaseModel) and not is_dataclass(example)
        fix = f" Fix: e.g. --set {dotted}={_yaml(example)}." if plain else ""
        messages.append(f"{dotted} must be {' or '.join(what)}; got {given[dotted]!r}.{fix}")
    return ConfigError(" ".join(messages))


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_recipe(raw: dict[str, Any]) -> Recipe:
    """A ``Recipe`` from a nested dict (a YAML file's content after ``--set`` overrides).

    Raises:
        ConfigError: unknown keys or values of the wrong type (every one named, with the fix).
    """
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise _explain(err) from None
