"""Batch inference of a bare model over a table (training's validation pass, classical features).

Bundles run through ``cxrkit.models.engine.Engine`` (bf16/ONNX/warm-up); this module serves models that
are not bundles yet, with the same loader and channels-last settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace
from cxrkit.data.table import CxrTable
from cxrkit.models.engine import choose_device, table_loader
from cxrkit.models.heads import logits_to_proba
from cxrkit.models.tta import tta_mean

log = logging.getLogger(__name__)


@torch.no_grad()
def run_batches(
    model: torch.nn.Module,
    table: CxrTable,
    prep: Preprocessing,
    fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    progress: bool = False,
    precision: str = "fp32",
    tta: str = "none",
) -> np.ndarray:
    """Apply ``fn(model, batch)`` to every image of ``table`` (decoded and preprocessed in workers).

    ``tta``: average ``fn`` over the test-time views (``cxrkit.models.tta``), as the engine does.
    """
    dev = choose_device(device)
    model = model.to(dev).eval()
    loader = table_loader(table, prep, batch_size, num_workers)
    outputs = []
    batches = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, desc="inference", unit="batch", leave=False)
    for x, _ in batches:
        x = x.to(dev).contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs.append(tta_mean(lambda v: fn(model, v), x, tta).float().cpu().numpy())
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outputs)


def predict_proba(
    model: torch.nn.Module,
    label_space: LabelSpace,
    table: CxrTable,
    prep: Preprocessing,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    progress: bool = False,
    precision: str = "fp32",
    tta: str = "none",
) -> np.ndarray:
    """Probabilities N x num_outputs for every image of ``table`` (``precision``: fp32 or bf16 autocast).

    With ``tta`` the logits are averaged over the views before the sigmoid/softmax (as the engine does).
    """
    logits = run_batches(
        model,
        table,
        prep,
        lambda m, x: m(x),
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        precision=precision,
        tta=tta,
    )
    if not len(logits):
        return np.zeros((0, label_space.num_outputs), np.float32)
    return logits_to_proba(torch.from_numpy(logits), label_space).numpy()
