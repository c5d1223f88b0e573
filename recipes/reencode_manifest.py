"""Re-encode a manifest's images as small JPEGs beside a copy of the manifest, so that a GPU machine can take them.

    .venv/bin/python recipes/reencode_manifest.py runs/manifests/all.csv .gpudata --size 128   # for recipes/all_gpu.yaml

Squashed to SIZE x SIZE (the recipes' `resize: squash`), quality 92; paths in the copy are relative to OUT.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pandas as pd
from PIL import Image


def _reencode(item: tuple[int, str], out: Path, size: int) -> str:
    i, path = item
    name = f"img/{i:05d}.jpg"
    Image.open(path).convert("L").resize((size, size), Image.BILINEAR).save(out / name, quality=92)
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    frame = pd.read_csv(args.manifest)
    (args.out / "img").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        work = partial(_reencode, out=args.out, size=args.size)
        frame["path"] = list(pool.map(work, enumerate(frame["path"]), chunksize=64))
    frame.to_csv(args.out / args.manifest.name, index=False)
    print(f"{len(frame)} images -> {args.out / args.manifest.name}")


if __name__ == "__main__":
    main()
