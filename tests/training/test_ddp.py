"""Lightning DDP across 2 CPU processes (gloo): disjoint data per rank, and the same model as one process.

Both runs train full-batch (one step per epoch): one process takes all N training images in one
batch, each of the two ranks takes N/2. With gradients averaged across ranks, DDP then computes
exactly the single-process update, so the final weights agree to float rounding. A DDP that failed
to average gradients, or fed both ranks the same images, ends far outside the tolerance.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch

from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import load_recipe
from cxrkit.training.run import train_from_recipe

# One xdist worker runs all of these (--dist loadgroup): two DDP runs at once would race for a rendezvous port.
pytestmark = pytest.mark.xdist_group("ddp")

# Measured: DDP vs one process 1.6e-5 (weights) and 2e-12 (val loss). With the gradient all-reduce
# switched off (a no-op DDP comm hook) they differ by 2.4e-2 and 2e-3 while val AUROC stays 1.0.
WEIGHT_ATOL = 1e-4
VAL_LOSS_ATOL = 1e-4


class _Recording:
    """Yields the wrapped sampler's indices and remembers them."""

    def __init__(self, inner, sink: list[int]):
        self.inner, self.sink = inner, sink

    def __iter__(self):
        for i in self.inner:
            self.sink.append(int(i))
            yield i

    def __len__(self) -> int:
        return len(self.inner)


class RecordSampledRows(L.Callback):
    """Writes ``rank<r>.json``: the sampler Lightning installed and the dataset rows drawn in epoch 0.

    Module level so that ``ddp_spawn`` can pickle it into each rank.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        # The DataLoader's batch sampler pulls indices from ``.sampler``; wrapping it before the first
        # epoch's iterator exists records exactly what this rank loads (the sampler itself, and so
        # Lightning's set_epoch on it, is unchanged).
        loader = trainer.train_dataloader
        self.sampler_type = type(loader.sampler).__name__
        loader.batch_sampler.sampler = _Recording(loader.batch_sampler.sampler, self.rows)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            record = {"sampler": self.sampler_type, "world_size": trainer.world_size, "rows": list(self.rows)}
            (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _recipe(data: Path, out: Path, batch_size: int, devices: int, balance: str, strategy: str = "auto"):
    overrides = [
        f"data.sources=[{data}]",
        "data.val=0.25",
        f"data.balance={balance}",
        f"out={out}",
        "model.arch=tiny_cnn",
        "model.weights=none",
        "model.image_size=32",
        "model.drop_rate=0",  # dropout masks differ between processes
        "augment.enabled=false",
        "train.epochs=8",
        f"train.batch_size={batch_size}",
        "train.lr=0.003",
        "train.optimizer=adam",
        "train.num_workers=0",
        "train.channels_last=false",
        "train.patience=100",  # both runs train every epoch, so last.ckpt is comparable
        "train.accelerator=cpu",
        f"train.devices={devices}",
        f"train.strategy={strategy if devices > 1 else 'auto'}",
    ]
    return load_recipe(None, overrides)


def _run(recipe, folder: Path) -> tuple[dict, dict[int, dict], dict[str, torch.Tensor], float]:
    folder.mkdir()
    result = train_from_recipe(recipe, progress=False, callbacks=[RecordSampledRows(folder)])
    records = {int(p.stem[4:]): json.loads(p.read_text()) for p in folder.glob("rank*.json")}
    ckpt = torch.load(recipe.out_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    metrics = (recipe.out_dir / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    val_rows = [dict(zip(header, line.split(","), strict=True)) for line in metrics[1:]]
    last_val_loss = [float(r["val_loss"]) for r in val_rows if r.get("val_loss")][-1]
    return result, records, ckpt["state_dict"], last_val_loss


# "weights": plain shuffling, Lightning installs a DistributedSampler over the dataset.
# "sampler": a seeded WeightedRandomSampler, wrapped in Lightning's DistributedSamplerWrapper: every
# rank draws the same weighted list (same seed) and keeps its own positions of it.
# From a dataset cache: ChunkOrderedSampler, which Lightning keeps (each rank a contiguous block).
# ddp_fork ranks start in ~1 s (this process's imports are inherited); ddp_spawn ranks import torch and cxrkit
# again (~10 s each) and additionally check that everything a rank needs pickles: those run under -m slow.
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("balance", "sampler", "cached", "strategy"),
    [
        ("weights", "DistributedSampler", False, "ddp_fork"),
        ("sampler", "DistributedSamplerWrapper", False, "ddp_fork"),
        pytest.param("sampler", "DistributedSamplerWrapper", False, "ddp_spawn", marks=pytest.mark.slow),
        pytest.param("weights", "ChunkOrderedSampler", True, "ddp_spawn", marks=pytest.mark.slow),
        pytest.param("sampler", "ChunkOrderedSampler", True, "ddp_spawn", marks=pytest.mark.slow),
    ],
)
def test_ddp_matches_one_process(learnable, tmp_path, balance, sampler, cached, strategy):
    if cached:
        pytest.importorskip("litdata")
        from cxrkit.data import load_dataset
        from cxrkit.data.cache import build_cache

        build_cache(load_dataset(learnable), tmp_path / "cache", size=40, workers=2)
        learnable = tmp_path / "cache"
    n_train = len(prepare_table(_recipe(learnable, tmp_path, 1, 1, balance).data).split("train"))
    assert n_train % 2 == 0, "the equivalence needs equal halves (no DistributedSampler padding)"

    ddp, ddp_rows, ddp_weights, ddp_loss = _run(
        _recipe(learnable, tmp_path / "ddp", n_train // 2, 2, balance, strategy), tmp_path / "ddp_rows"
    )
    one, one_rows, one_weights, one_loss = _run(
        _recipe(learnable, tmp_path / "one", n_train, 1, balance), tmp_path / "one_rows"
    )

    # (a) Each rank drew its own half of the epoch's draw: no image twice across ranks (shuffle), and
    # for the weighted sampler the two halves together are exactly one weighted draw, not two.
    assert sorted(ddp_rows) == [0, 1] and {r["sampler"] for r in ddp_rows.values()} == {sampler}
    assert all(r["world_size"] == 2 for r in ddp_rows.values())
    rank0, rank1 = ddp_rows[0]["rows"], ddp_rows[1]["rows"]
    assert len(rank0) == len(rank1) == n_train // 2
    assert Counter(rank0) + Counter(rank1) == Counter(one_rows[0]["rows"])
    if balance == "weights":
        assert set(rank0).isdisjoint(rank1) and sorted(rank0 + rank1) == list(range(n_train))

    # (b) Same model as one process on the same global batches.
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    assert ddp["epochs_run"] == one["epochs_run"] == 8
    assert ddp_weights.keys() == one_weights.keys()
    for name, w in one_weights.items():
        torch.testing.assert_close(ddp_weights[name], w, atol=WEIGHT_ATOL, rtol=0, msg=f"{name} differs")
    assert abs(ddp_loss - one_loss) < VAL_LOSS_ATOL
    assert ddp["val_auroc"] == pytest.approx(one["val_auroc"], abs=1e-6)
    assert ddp["val_auroc"] > 0.9
    cfg = json.loads((tmp_path / "ddp" / "bundle" / "config.json").read_text())
    assert cfg["extra"]["world_size"] == 2
