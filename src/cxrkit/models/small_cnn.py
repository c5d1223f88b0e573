"""The two small CNNs of the classic Keras tutorials, rebuilt in PyTorch.

Both end in ``Flatten`` + ``Linear``, so the width of their first dense layer depends on the input
size. They are built for one ``image_size`` (stored in the bundle's model kwargs), which sizes that
layer exactly at construction by running a dummy input through the convolutional part (no
``LazyLinear``: a lazy layer would have no shape until the first forward, so its weights could not be
loaded into a freshly built model). An input of another size fails with a message naming both sizes.

They expose the same small interface as timm models (``forward_features``, ``forward_head``,
``num_features``, ``get_classifier``), so ``embed`` and the training code treat all models alike.
"""

from __future__ import annotations

import torch
from torch import nn

from cxrkit.core.errors import ConfigError


class _FlattenCNN(nn.Module):
    """Shared plumbing: conv ``features`` -> flatten -> dense ``pre_logits`` -> ``head``."""

    features: nn.Sequential
    pre_logits: nn.Sequential
    head: nn.Module

    def __init__(self, in_chans: int, image_size: int) -> None:
        super().__init__()
        if image_size < 8:
            raise ConfigError(f"image_size must be at least 8 pixels, got {image_size}.")
        self.in_chans = in_chans
        self.image_size = image_size

    def _flat_dim(self) -> int:
        # Shape inference on the meta device: exact, and costs no memory or compute.
        params = {k: v.to("meta") for k, v in self.features.state_dict(keep_vars=True).items()}
        probe = torch.zeros(1, self.in_chans, self.image_size, self.image_size, device="meta")
        with torch.no_grad():
            out = torch.func.functional_call(self.features, params, (probe,))
        flat = int(out.shape[1] * out.shape[2] * out.shape[3])
        if flat == 0:
            raise ConfigError(f"image_size {self.image_size} is too small for {type(self).__name__}.")
        return flat

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ConfigError(
                f"{type(self).__name__} was built for {self.image_size}x{self.image_size} inputs "
                f"(its dense layer depends on it) but got {tuple(x.shape[-2:])}; resize the input or "
                f"build the model with image_size={x.shape[-1]}."
            )
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(torch.flatten(x, 1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head


class SmallCNN(_FlattenCNN):
    """Keras "image classification from scratch" style CNN.

    ``blocks`` x (Conv3x3 -> ReLU -> MaxPool2), widths 32, 64, 128, 128, ..., then Flatten ->
    Dense(``hidden``) -> ReLU -> Dropout(``drop_rate``) -> Dense(``num_classes``).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        image_size: int = 128,
        blocks: int = 4,
        hidden: int = 512,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__(in_chans, image_size)
        if image_size < 2**blocks:
            raise ConfigError(f"SmallCNN with {blocks} pooling blocks needs image_size >= {2**blocks}.")
        widths = [min(32 * 2**i, 128) for i in range(blocks)]
        layers: list[nn.Module] = []
        prev = in_chans
        for w in widths:
            layers += [nn.Conv2d(prev, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = w
        self.features = nn.Sequential(*layers)
        self.num_features = hidden
        self.pre_logits = nn.Sequential(
            nn.Linear(self._flat_dim(), hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate)
        )
        self.head = nn.Linear(hidden, num_classes)


class TinyCNN(_FlattenCNN):
    """Keras MNIST-tutorial style CNN.

    Conv3x3(32) -> ReLU -> Conv3x3(32) -> ReLU -> MaxPool2 -> Flatten -> Dense(``hidden``) -> ReLU
    -> [Dropout(``drop_rate``)] -> Dense(``num_classes``). Convolutions are 'valid' as in Keras.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        image_size: int = 64,
        hidden: int = 128,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(in_chans, image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.num_features = hidden
        self.pre_logits = nn.Sequential(
            nn.Linear(self._flat_dim(), hidden), nn.ReLU(inplace=True), nn.Dropout(drop_rate)
        )
        self.head = nn.Linear(hidden, num_classes)
