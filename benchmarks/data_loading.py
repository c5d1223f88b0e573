"""Loader images/s from dataset shards (cxr data cache) vs from the image files (prints JSON).

    PYTHONPATH=src .venv/bin/python benchmarks/data_loading.py ../shared/data/kaggle-pneumonia/train \
        --n 1000 --size 224 --workers 2 [--compare-webdataset]

Both loaders are the ones training uses (``CxrImageDataset``, batch 32, shuffled, ``--workers`` worker
processes), over the same ``--n`` images: one reads the files (PNG/JPEG decode every epoch), the other a
cache built from them at ``--cache-size`` px, read chunk by chunk as training reads it (``shards``:
``ChunkOrderedSampler``) and in a fully random order (``shards_random``: ``DataLoader(shuffle=True)``).
Two transforms: ``plain`` (resize + normalise: inference, and training with ``augment.on: device``,
where the GPU augments) and ``augmented`` (the CPU training transform). Each figure is the best of
``--epochs`` passes (the first also pays worker start-up; the workers persist between epochs, as in
training's loaders), beside the CPU time per image (one process, ``time.process_time``), which a busy
shared machine does not skew.
``--resave PX`` first re-encodes the images at PX px (longer side; ``--resave-format png|jpeg``), e.g. 1024 as
NIH ChestX-ray14's PNGs are (the shared copies are downsized). ``--compare-webdataset`` also reads the same
uint8 arrays from WebDataset tar shards (the alternative to LitData), for the choice of format.
Target (issue 13): shards >= 5x files at 224 px with 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from cxrkit.core.preprocess import Preprocessing
from cxrkit.data import load_dataset
from cxrkit.data.cache import build_cache
from cxrkit.data.shard_order import ChunkOrderedSampler, shard_chunks
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import Augmentation, ImageTransform


def best_rate(loader: DataLoader, n: int, epochs: int) -> float:
    best = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in loader:
            pass
        best = max(best, n / (time.perf_counter() - t0))
    return round(best, 1)


def cpu_ms_per_image(ds: CxrImageDataset) -> float:
    """CPU time (not wall time) one item costs in this process: what a dedicated core would spend,
    however busy a shared machine is while it is measured."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker (idle OpenMP threads spin and would count)
    ds[0]  # opens the shards / warms the decoder
    t0 = time.process_time()
    for i in range(len(ds)):
        ds[i]
    torch.set_num_threads(threads)
    return round((time.process_time() - t0) * 1000 / len(ds), 2)


def webdataset_rate(cache_table, folder: Path, transform: ImageTransform, args) -> float:
    """The same uint8 arrays in WebDataset tar shards, decoded and transformed alike."""
    import webdataset as wds

    from cxrkit.data.images import load_image

    folder.mkdir(parents=True, exist_ok=True)
    pattern = str(folder / "wds-%06d.tar")
    with wds.ShardWriter(pattern, maxsize=64 * 2**20, verbose=0) as sink:
        for i, p in enumerate(cache_table.frame["path"]):
            img = (load_image(p) * 255).round().astype(np.uint8)
            sink.write({"__key__": f"{i:08d}", "npy": img, "cls": int(np.nanargmax(cache_table.labels[i]))})
    urls = sorted(str(p) for p in folder.glob("wds-*.tar"))

    def to_sample(s: tuple) -> tuple:
        return transform(s[0].astype(np.float32) / 255.0), s[1]

    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode().to_tuple("npy", "cls").map(to_sample)
    loader = wds.WebLoader(ds.batched(32), batch_size=None, num_workers=args.workers)
    return best_rate(loader, len(cache_table), args.epochs)


def resave(table, folder: Path, size: int, fmt: str):
    """A copy of ``table`` whose images are re-encoded at ``size`` px (longer side) in ``folder``."""
    from PIL import Image

    from cxrkit.data.images import load_image

    folder.mkdir(parents=True)
    paths = []
    for i, p in enumerate(table.frame["path"]):
        img = Image.fromarray((load_image(p) * 255).round().astype(np.uint8))
        scale = size / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        out = folder / f"{i:06d}.{'png' if fmt == 'png' else 'jpg'}"
        img.save(out, quality=95) if fmt == "jpeg" else img.save(out)
        paths.append(str(out))
    table = table.subset(np.arange(len(table)))
    table.frame["path"] = paths
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cache-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--compare-webdataset", action="store_true")
    ap.add_argument("--resave", type=int, default=0, help="re-encode the images at this size first (0: as they are)")
    ap.add_argument("--resave-format", default="png", choices=("png", "jpeg"))
    args = ap.parse_args()
    table = load_dataset(args.data[0]) if len(args.data) == 1 else None
    if table is None:
        from cxrkit.data import load_datasets

        table = load_datasets(args.data)
    table = table.subset(np.random.default_rng(0).choice(len(table), min(args.n, len(table)), replace=False))
    transforms = {
        "plain": ImageTransform(Preprocessing(image_size=args.size)),
        "augmented": ImageTransform(Preprocessing(image_size=args.size), Augmentation()),
    }
    result: dict = {"images": len(table), "size": args.size, "workers": args.workers, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if args.resave:
            table = resave(table, Path(tmp) / "files", args.resave, args.resave_format)
            result["files"] = f"re-encoded at {args.resave} px as {args.resave_format}"
        t0 = time.perf_counter()
        info = build_cache(table, Path(tmp) / "cache", size=args.cache_size)
        result["cache_build_s"] = round(time.perf_counter() - t0, 1)
        result["cache_size_px"] = info["size"]
        cached = load_dataset(Path(tmp) / "cache")
        for tname, transform in transforms.items():
            for name, t in (("files", table), ("shards", cached), ("shards_random", cached)):
                ds = CxrImageDataset(t, transform)
                # as training samples: shards chunk by chunk (ChunkOrderedSampler), files at random
                chunks = shard_chunks(ds.paths) if name == "shards" else None
                sampler = None if chunks is None else ChunkOrderedSampler(chunks)
                loader = DataLoader(  # persistent workers, as training's: an epoch does not restart them
                    ds, 32, shuffle=sampler is None, sampler=sampler, num_workers=args.workers, persistent_workers=True
                )
                result[f"{tname}_{name}_img_s"] = best_rate(loader, len(t), args.epochs)
                if name != "shards_random":
                    result[f"{tname}_{name}_cpu_ms_per_image"] = cpu_ms_per_image(ds)
            if args.compare_webdataset:
                result[f"{tname}_webdataset_img_s"] = webdataset_rate(cached, Path(tmp) / tname, transform, args)
            result[f"{tname}_shards_vs_files"] = round(
                result[f"{tname}_shards_img_s"] / result[f"{tname}_files_img_s"], 2
            )
            cpu = result[f"{tname}_files_cpu_ms_per_image"] / result[f"{tname}_shards_cpu_ms_per_image"]
            result[f"{tname}_shards_vs_files_cpu_time"] = round(cpu, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
