"""`covid3`: fine-tune EfficientNet-Lite1's last block (1x1 conv_head 320->1280 + BN) and the classifier on CPU,
optionally with a source-adversarial branch (gradient reversal, DANN), scored leave-source-out.

    python recipes/covid3_head_block.py                      # ERM and DANN (lambda 0.3), 4 folds each
    python recipes/covid3_head_block.py --dann 0 0.1 1.0 --epochs 8

Why here: fine-tuning the whole network does not fit the shared 2-core machine, but everything below conv_head is
frozen, so its input (320 x 8 x 8 per 240 px lung crop) is computed once and cached
(runs/linear_head/block240_crop0.1_lite1_covid3.npy, ~8 min). What it asks: does a trainable non-linear layer,
and one pushed not to encode the hospital, hold up better on a held-out source than the shipped linear head?
Same manifest, lung crop, source-balanced weights and measures as recipes/covid3_head_variants.py.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import covid3_head_variants as variants
import linear_head as lh

from cxrkit.core.task import LabelSpace
from cxrkit.data import load_datasets
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import load_recipe

CACHE = Path("runs/linear_head/block240_crop0.1_lite1_covid3.npz")
BACKBONE = lh.Backbone(size=240, arch="efficientnet_lite1", lungs="crop", margin=0.1)  # the shipped covid3's
SPACE = LabelSpace.exclusive_from(["NORMAL", "ABNORMAL"])  # one output; only the backbone is used


def _backbone() -> nn.Module:
    return BACKBONE.model(SPACE)


class _One(nn.Module):
    """A stand-in classifier of the right width (one logit): the engine turns logits into probabilities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def block_inputs(manifest: str) -> tuple[np.ndarray, np.ndarray]:
    """(paths, N x 320 x 8 x 8 float16): what enters conv_head, for every manifest row (cached)."""
    if CACHE.is_file():
        z = np.load(CACHE, allow_pickle=True)
        return z["paths"], z["X"]
    table = load_datasets([manifest])
    model = _backbone()
    # The engine's "embedding" is forward_head(pre_logits=True) of forward_features: with conv_head, bn2 and the
    # pooling replaced, it is the flattened conv_head input, decoded and lung-cropped exactly as inference does.
    model.conv_head, model.bn2, model.global_pool, model.classifier = nn.Identity(), nn.Identity(), nn.Flatten(), _One()
    options = InferenceOptions(precision="fp32", batch_size=32, num_workers=1)
    flat = Engine.for_model(model, SPACE, BACKBONE.prep(), options=options).run_table(table, "embedding")
    X = flat.reshape(len(flat), 320, -1).astype(np.float16)
    paths = np.array(table.frame["path"])
    np.savez(CACHE, X=X, paths=paths)
    return paths, X


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


class HeadBlock(nn.Module):
    """ImageNet conv_head + bn2 (trainable), average pool, a 3-class classifier, and a source classifier fed
    through gradient reversal (its loss trains it, and pushes the features to hide the source)."""

    def __init__(self, backbone: nn.Module, n_sources: int):
        super().__init__()
        self.conv_head, self.bn2 = copy.deepcopy(backbone.conv_head), copy.deepcopy(backbone.bn2)
        self.drop = nn.Dropout(0.3)
        self.classifier = nn.Linear(1280, 3)
        self.source = nn.Sequential(nn.Linear(1280, 256), nn.ReLU(), nn.Linear(256, n_sources))

    def forward(self, x: torch.Tensor, lam: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        side = round((x.shape[-1] / 320) ** 0.5)  # rows are the flattened 320 x side x side block input
        f = self.bn2(self.conv_head(x.view(len(x), 320, side, side))).mean((2, 3))
        return self.classifier(self.drop(f)), self.source(_Reverse.apply(f, lam))


def fit_predict(backbone, X, y, src, X_test, lam: float, epochs: int, seed: int = 0) -> np.ndarray:
    """Train on (X, y) with source-balanced weights; the held-out rows' class probabilities."""
    torch.manual_seed(seed)
    sources = sorted(set(src))
    s = torch.tensor([sources.index(v) for v in src])
    w = torch.tensor(lh._weights(src, y), dtype=torch.float32)
    net = HeadBlock(backbone, len(sources))
    opt = torch.optim.AdamW(
        [
            {"params": [*net.conv_head.parameters(), *net.bn2.parameters()], "lr": 1e-4},
            {"params": [*net.classifier.parameters(), *net.source.parameters()], "lr": 1e-3},
        ],
        weight_decay=1e-2,
    )
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).long()
    for epoch in range(epochs):
        net.train()
        # DANN's usual ramp: the reversal grows from 0 to lam over training
        ramp = lam * (2 / (1 + np.exp(-10 * epoch / max(1, epochs - 1))) - 1)
        for idx in torch.randperm(len(Xt)).split(64):
            logits, src_logits = net(Xt[idx].float(), ramp)
            loss = (nn.functional.cross_entropy(logits, yt[idx], reduction="none") * w[idx]).mean()
            if lam:
                loss = loss + nn.functional.cross_entropy(src_logits, s[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return torch.cat([net(torch.from_numpy(b).float())[0].softmax(1) for b in np.array_split(X_test, 16)]).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dann", type=float, nargs="+", default=[0.0, 0.3], help="gradient-reversal weights (0: ERM)")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    recipe = load_recipe("recipes/covid3.yaml", [])
    table = prepare_table(recipe.data)
    paths, X = block_inputs(recipe.data.sources[0])
    order = {p: i for i, p in enumerate(paths)}
    X = X[[order[p] for p in table.frame["path"]]].reshape(len(table), -1)
    src, Y = table.frame["source"].to_numpy(), table.labels
    classes = list(table.label_space.classes)
    j, normal = classes.index("COVID-19"), classes.index("NORMAL")
    backbone = _backbone()
    for lam in args.dann:
        p = np.zeros(len(X))
        for held in sorted(set(src)):
            tr, te = src != held, src == held
            p[te] = fit_predict(backbone, X[tr], Y[tr].argmax(1), src[tr], X[te], lam, args.epochs)[:, j]
        name = "ERM" if lam == 0 else f"DANN lambda {lam}"
        print(variants._line(f"conv_head fine-tuned, {args.epochs} epochs, {name}", p, Y, src, j, normal), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
