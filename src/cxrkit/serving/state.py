"""What a running server holds: the loaded models, the index and its model, the case store, limits."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cachetools import LRUCache, cachedmethod

from cxrkit.core.errors import ConfigError, CxrkitError, UnknownNameError
from cxrkit.core.task import TaskType
from cxrkit.models.engine import InferenceOptions
from cxrkit.search import CaseIndex, resolve_index_model
from cxrkit.search.timeline import severity_from_probs
from cxrkit.serving.keys import KeyRing
from cxrkit.serving.predictor import Predictor
from cxrkit.serving.store import CaseStore
from cxrkit.serving.uploads import ServerLimits
from cxrkit.serving.workqueue import WorkQueue

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """One served model: its public name and its predictor."""

    name: str
    predictor: Predictor

    @property
    def info(self) -> dict[str, Any]:
        b = self.predictor.bundle
        return {
            **self.predictor.describe(),
            "name": self.name,
            "created": b.created,
            "image_size": b.preprocessing.image_size,
            "default_threshold": self.default_threshold,
        }

    @property
    def default_threshold(self) -> float:
        """The slider's starting point: the positive class's threshold (binary), else the mean threshold."""
        b = self.predictor.bundle
        if b.label_space.task is TaskType.BINARY:
            return float(b.thresholds.get(b.label_space.positive, 0.5))
        vals = list(b.thresholds.values())
        return float(np.mean(vals)) if vals else 0.5

    def severity(self, probs: np.ndarray) -> float:
        """Probability of disease (``cxrkit.search.SEVERITY_RULE``) for one probability row."""
        return round(float(severity_from_probs(self.predictor.bundle.label_space, np.asarray(probs)[None])[0]), 6)


class OverlayCache:
    """The last few overlays made with overlay=url, by analysis ID (bounded memory, shared by request threads)."""

    def __init__(self, size: int = 64):
        self.size = size
        self._items: LRUCache[str, bytes] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def put(self, key: str, png: bytes) -> None:
        with self._lock:
            self._items[key] = png

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)


@dataclass
class ServerState:
    models: dict[str, ServedModel]
    index: CaseIndex | None
    index_model: ServedModel | None
    store: CaseStore
    limits: ServerLimits
    api_key: str | None = None
    overlays: OverlayCache = field(default_factory=OverlayCache)
    work: WorkQueue = field(default_factory=WorkQueue)
    keys: KeyRing = field(init=False)
    _thumbs: LRUCache[tuple[int, int], bytes | None] = field(default_factory=lambda: LRUCache(maxsize=512))
    _thumb_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.keys = KeyRing(self.store, self.api_key)
        lim = self.limits
        self.work = WorkQueue(
            lim.max_concurrent, lim.max_queue, max(lim.pixel_budget, lim.max_pixels), lim.queue_wait_s
        )

    @property
    def default_name(self) -> str:
        return next(iter(self.models))

    def model(self, name: str | None) -> ServedModel:
        """The served model called ``name`` (default: the first).

        Raises:
            UnknownNameError: not served (the message lists the served models).
        """
        if not name:
            return self.models[self.default_name]
        if name not in self.models:
            raise UnknownNameError("model", name, self.models)
        return self.models[name]

    @cachedmethod(lambda self: self._thumbs, lock=lambda self: self._thumb_lock)
    def thumbnail(self, row: int, size: int) -> bytes | None:
        """PNG thumbnail of index row ``row`` (cached, unreadable files too); None when its file cannot be read."""
        from cxrkit.io import read_image
        from cxrkit.serving.render import array_png

        assert self.index is not None
        path = str(self.index.frame["path"].iat[row])
        try:
            return array_png(read_image(path), max_side=size)
        except CxrkitError:
            log.warning("index row %d: its image cannot be read", row)
            return None


def served_name(ref: str | Path, predictor: Predictor) -> str:
    """A model's public name: a bare bundle name as given; for a folder, its name (its parent's for '.../bundle')."""
    text = str(ref)
    if isinstance(ref, str) and "/" not in text and "\\" not in text and not Path(text).is_dir():
        return text
    path = Path(predictor.bundle.path)
    return path.parent.name if path.name == "bundle" and path.parent.name else path.name


def load_models(
    models: Sequence[str | Path | Predictor] | Mapping[str, str | Path | Predictor],
    inference: InferenceOptions | None = None,
) -> dict[str, ServedModel]:
    """Load every model once (safetensors bundles through ``load_bundle``), named uniquely.

    Raises:
        ConfigError: no model given.
        BundleError / UnknownNameError: a bundle is missing or corrupt.
    """
    items: list[tuple[str | None, str | Path | Predictor]]
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = [(None, m) for m in models]
    if not items:
        raise ConfigError(
            "No model to serve. Train one (`cxr train recipes/pneumonia.yaml`) and ship it (`make ship NAME=pneumonia`), "
            "or pass --model NAME_OR_FOLDER."
        )
    out: dict[str, ServedModel] = {}
    for name, ref in items:
        predictor = ref if isinstance(ref, Predictor) else Predictor.load(ref, inference)
        base = name or (
            served_name(ref, predictor)
            if not isinstance(ref, Predictor)
            else served_name(predictor.bundle.path, predictor)
        )
        unique, n = base, 2
        while unique in out:
            unique, n = f"{base}-{n}", n + 1
        out[unique] = ServedModel(unique, predictor)
        log.info(
            "serving model %s (%s, sha256 %s...)",
            unique,
            predictor.bundle.architecture,
            predictor.bundle.fingerprint[:12],
        )
    return out


def pick_index_model(
    index: CaseIndex, served: Mapping[str, ServedModel], inference: InferenceOptions | None = None
) -> ServedModel:
    """The model that embeds similar-case queries: a served one with the index's fingerprint, else the
    model recorded in the index (loaded once here).

    Raises:
        ConfigError: the index's model is neither served nor found (the message says what to pass).
    """
    for m in served.values():
        if m.predictor.bundle.fingerprint == index.fingerprint:
            return m
    try:
        bundle = resolve_index_model(index)
    except CxrkitError as err:
        raise ConfigError(
            f"The index at {index.path} was built with a model that is not served and cannot be found: {err} "
            "Fix: add that model with --model, or rebuild the index with a served model."
        ) from None
    predictor = Predictor.from_bundle(bundle, inference)
    return ServedModel(f"index:{index.info['model'].get('name') or bundle.path.name}", predictor)
