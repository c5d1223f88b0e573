"""Decode + preprocess throughput of the data layer (prints JSON).

    .venv/bin/python benchmarks/data_loading.py ../shared/data/kaggle-pneumonia/train --n 512 --size 224

Measures images/s for decoding alone and for the full training transform (resize + augmentation +
normalisation), single process and through a DataLoader with worker processes.
"""

from __future__ import annotations

import argparse
import json
import time

from torch.utils.data import DataLoader

from cxrkit.core.preprocess import Preprocessing
from cxrkit.data import load_dataset
from cxrkit.data.images import load_image
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import Augmentation, ImageTransform


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    table = load_dataset(args.data)
    table = table.subset(list(range(min(args.n, len(table)))))
    paths = table.frame["path"].tolist()

    t0 = time.perf_counter()
    for p in paths:
        load_image(p)
    decode = rate(len(paths), time.perf_counter() - t0)

    transform = ImageTransform(Preprocessing(image_size=args.size), Augmentation())
    ds = CxrImageDataset(table, transform)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    single = rate(len(ds), time.perf_counter() - t0)

    loader = DataLoader(ds, batch_size=32, num_workers=args.workers)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    workers = rate(len(ds), time.perf_counter() - t0)
    print(json.dumps({
        "images": len(paths), "size": args.size,
        "decode_images_per_s": decode,
        "decode_transform_augment_images_per_s": single,
        f"dataloader_{args.workers}_workers_images_per_s": workers,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
