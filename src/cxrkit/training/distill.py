"""Knowledge distillation: an ensemble of trained bundles (seeds, snapshots, LOSO folds) teaches one network.

``train.distill_from: [bundle dirs or names]`` loads the teachers; during training each batch (after
augmentation and mixing, so teacher and student see the same pixels) is run through every teacher and the
mean of their probabilities at ``train.distill_temperature`` becomes the soft target of the student.
The shipped model is then a single network of the student's size that carries the ensemble's knowledge.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.models import load_bundle, resolve_bundle

log = logging.getLogger(__name__)


class TeacherEnsemble(nn.Module):
    """Frozen teacher models with the student's label space; ``forward`` gives the mean soft targets."""

    def __init__(self, models: list[nn.Module], sizes: list[int], label_space: LabelSpace, temperature: float):
        super().__init__()
        self.members = nn.ModuleList(models).eval().requires_grad_(False)
        self.sizes = sizes
        self.label_space = label_space
        self.temperature = float(temperature)

    def train(self, mode: bool = True) -> TeacherEnsemble:
        return super().train(False)  # teachers always run in eval mode (BatchNorm statistics, no dropout)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = []
        for model, size in zip(self.members, self.sizes, strict=True):
            xi = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            logits = model(xi).float() / self.temperature
            exclusive = self.label_space.task is TaskType.MULTICLASS
            probs.append(logits.softmax(dim=1) if exclusive else logits.sigmoid())
        return torch.stack(probs).mean(dim=0)


def load_teachers(
    paths: list[str], label_space: LabelSpace, prep: Preprocessing, temperature: float
) -> TeacherEnsemble:
    """Load the teacher bundles and check that they predict the student's classes from the same inputs.

    Raises:
        ConfigError: a teacher has other classes or task, or another normalisation / channel count.
    """
    models, sizes = [], []
    for path in paths:
        bundle = load_bundle(resolve_bundle(path))
        if bundle.label_space != label_space:
            raise ConfigError(
                f"Teacher {path} predicts {bundle.label_space.task.value} {list(bundle.classes)}, the student "
                f"{label_space.task.value} {list(label_space.classes)}. Fix: distil from bundles trained on the same classes."
            )
        p = bundle.preprocessing
        if (p.mean, p.std, p.in_chans, p.resize) != (prep.mean, prep.std, prep.in_chans, prep.resize):
            raise ConfigError(
                f"Teacher {path} normalises inputs as mean {p.mean} std {p.std} ({p.in_chans} channel(s), {p.resize}); "
                f"the student as mean {prep.mean} std {prep.std} ({prep.in_chans}, {prep.resize}). Fix: use teachers "
                "of the same backbone family (their input sizes may differ)."
            )
        if p.equalize != prep.equalize:  # teachers see the student's inputs, so they must be equalised alike
            raise ConfigError(
                f"Teacher {path} was trained with preprocess.equalize {p.equalize}, the student uses "
                f"{prep.equalize}. Fix: set the student's preprocess.equalize to {p.equalize} or use other teachers."
            )
        models.append(bundle.model.float())
        sizes.append(p.image_size)
    if not models:
        raise ConfigError("train.distill_from names no bundles.")
    log.info("distilling from %d teacher(s): %s", len(models), paths)
    return TeacherEnsemble(models, sizes, label_space, temperature)
