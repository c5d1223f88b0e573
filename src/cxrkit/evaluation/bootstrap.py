"""Percentile bootstrap confidence intervals, vectorised over resamples.

Resampled index matrices are generated in chunks (at most ``_CHUNK_CELLS`` entries each) so that memory stays
bounded for large test sets. Metrics that expose ``batched(Y, P)`` (every metric in
:mod:`cxrkit.evaluation.metrics`) are computed for a whole chunk at once; any other callable
``metric_fn(y, p) -> float | None`` is called once per resample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.evaluation.metrics import get_metric

logger = logging.getLogger(__name__)

_CHUNK_CELLS = 4_000_000


def check_bootstrap_args(n_boot: Any, alpha: Any) -> tuple[int, float]:
    """Validate ``n_boot`` (int >= 0; 0 disables intervals) and ``alpha`` (in (0, 1))."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ConfigError(f"n_boot must be an int >= 0 (0 turns confidence intervals off), got {n_boot!r}.")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in (0, 1), e.g. 0.05 for a 95% interval, got {alpha!r}.") from None
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05 for a 95% interval, got {alpha}.")
    return int(n_boot), alpha


def bootstrap_indices(n: int, n_boot: int, seed: int = 0, strata: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield chunks (b x n int arrays) of resampled row indices, ``n_boot`` rows in all.

    Args:
        n: number of items.
        n_boot: number of resamples.
        seed: seed of numpy's default generator; the same seed gives the same resamples.
        strata: optional (n,) labels; when given, each stratum is resampled separately with its own size kept,
            so every resample has the same class balance as the data (and both classes for a binary target).
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        parts = [g[rng.integers(0, g.size, size=(b, g.size))] for g in groups if g.size]
        yield np.concatenate(parts, axis=1)
        done += b


def percentile_interval(samples: np.ndarray, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Equal-tailed percentile interval of the finite ``samples``; (None, None) when there are none."""
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    if finite.size < samples.size:
        logger.info(
            "%d of %d bootstrap resamples had an undefined metric and were left out.",
            samples.size - finite.size,
            samples.size,
        )
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def bootstrap_samples(
    metric_fn: Callable[..., Any] | str,
    y: Any,
    p: Any,
    n_boot: int = 1000,
    seed: int = 0,
    stratified: bool = True,
) -> np.ndarray:
    """Metric value on each of ``n_boot`` resamples (NaN where undefined). See :func:`bootstrap_ci`."""
    n_boot, _ = check_bootstrap_args(n_boot, 0.05)
    fn = get_metric(metric_fn) if isinstance(metric_fn, str) else metric_fn
    if not callable(fn):
        raise ConfigError(f"metric_fn must be a callable metric(y, p) or a metric name, got {metric_fn!r}.")
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.shape[0] != p.shape[0]:
        raise DataFormatError(f"y has {y.shape[0]} rows but p has {p.shape[0]}; they must be row-aligned.")
    n = y.shape[0]
    strata = None
    if stratified:
        if y.ndim != 1 or (y.dtype.kind == "f" and np.isnan(y).any()):
            raise DataFormatError(
                "Stratified bootstrap needs a 1-D target without NaN (mask unknown labels first), "
                f"got shape {y.shape}; pass stratified=False for other targets."
            )
        strata = y
    batched = getattr(fn, "batched", None)
    out = []
    for idx in bootstrap_indices(n, n_boot, seed, strata):
        if batched is not None and y.ndim == 1 and p.ndim == 1:
            out.append(np.asarray(batched(y[idx], p[idx]), dtype=np.float64))
        else:
            vals = [fn(y[row], p[row]) for row in idx]
            out.append(np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64))
    return np.concatenate(out) if out else np.empty(0)


def bootstrap_ci(
    metric_fn: Callable[..., Any] | str,
    y: Any,
    p: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap confidence interval of ``metric_fn(y, p)``.

    Args:
        metric_fn: a metric name ('auroc', 'auprc', 'sensitivity', ... at threshold 0.5), a metric object from
            :mod:`cxrkit.evaluation.metrics` (vectorised), or any callable ``(y, p) -> float | None`` (looped).
        y: targets, (N,) for stratified resampling; any row-indexable array otherwise.
        p: scores, row-aligned with ``y``.
        n_boot: number of resamples; 0 gives (None, None).
        seed: random seed (results are reproducible).
        alpha: 0.05 gives a 95% interval.
        stratified: resample each class separately, keeping the class counts (recommended for AUROC, which is
            undefined on a resample with a single class).

    Returns:
        ``(low, high)``, or ``(None, None)`` when the metric is undefined on every resample.
    """
    n_boot, alpha = check_bootstrap_args(n_boot, alpha)
    if n_boot == 0:
        return None, None
    return percentile_interval(bootstrap_samples(metric_fn, y, p, n_boot, seed, stratified), alpha)
