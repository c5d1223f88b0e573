"""The measures of ``benchmarks/gpu.py``, each run in a child process (see gpu.py for the protocol).

Every figure is for the shipped ``pneumonia`` model (EfficientNet-Lite0, 1 channel) beside DenseNet-121
(timm, random weights, 1 channel, 18 outputs as torchxrayvision builds it) on the same path.
Only torch, torchvision, timm, numpy and pillow are needed; cxrkit is imported (lazily) only to load the
shipped weights and for the engine measures, and a failure there is reported, not fatal.
"""

from __future__ import annotations

import copy
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

CL = torch.channels_last
MODELS = ("pneumonia", "densenet121")
PREP = {"pneumonia": (0.5, 0.5), "densenet121": (0.449, 0.226)}  # (mean, std) on [0, 1] gray


@dataclass
class Config:
    device: str = "cuda"
    size: int = 224
    batch: int = 256
    train_batch: int = 128
    iters: int = 10  # timed iterations per round
    rounds: int = 5  # best round is reported (robust to a neighbour's burst)
    latency_n: int = 300
    workers: int = 8
    compile: bool = True
    jpeg_small: list[str] = field(default_factory=list)
    jpeg_big: list[str] = field(default_factory=list)
    table_rows: int = 10000  # file lists are repeated to this many rows
    big_rows: int = 2000
    repo_src: str = ""
    threads: int = 0  # torch CPU threads per child (0: torch's default)

    @classmethod
    def load(cls, path: str) -> Config:
        return cls(**json.loads(Path(path).read_text()))


class Recorder:
    """Results of one child, rewritten atomically after every measure so a killed child keeps its figures."""

    def __init__(self, path: str, child: str) -> None:
        self.path, self.child, self.data = Path(path), child, {}

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def measure(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as err:
            value = {"error": f"{type(err).__name__}: {str(err)[:600]}", "where": traceback.format_exc(limit=-3)[-900:]}
        self.data[name] = value
        self.flush()
        print(
            f"[{self.child}] {name} ({time.perf_counter() - t0:.1f}s): {json.dumps(value, default=str)[:300]}",
            flush=True,
        )
        return value


# -- helpers -----------------------------------------------------------------------------------


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best_rate(fn: Callable[[], Any], n_per_call: int, cfg: Config, dev: torch.device, warmup: int = 3) -> float:
    """Best images/s over ``cfg.rounds`` rounds of ``cfg.iters`` calls (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    sync(dev)
    best = 0.0
    for _ in range(cfg.rounds):
        t0 = time.perf_counter()
        for _ in range(cfg.iters):
            fn()
        sync(dev)
        best = max(best, cfg.iters * n_per_call / (time.perf_counter() - t0))
    return round(best, 1)


def latency(fn: Callable[[], Any], n: int, warmup: int = 20) -> dict[str, float]:
    """p50/p95 ms of ``fn`` (which returns host data, so each call is complete when it returns)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3)}


def build(name: str, dev: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model in eval mode, channels-last, on ``dev``."""
    import timm

    if name == "densenet121":
        model = timm.create_model("densenet121", pretrained=False, in_chans=1, num_classes=18)
        info: dict[str, Any] = {"arch": "timm densenet121", "weights": "random", "outputs": 18}
    else:
        try:
            from cxrkit.models.bundle import load_bundle

            bundle = load_bundle("pneumonia")
            model, info = bundle.model, {"arch": bundle.architecture, "weights": "shipped bundle", "outputs": 1}
        except Exception as err:  # speed does not depend on the weights
            model = timm.create_model("tf_efficientnet_lite0", pretrained=False, in_chans=1, num_classes=1)
            info = {"arch": "timm tf_efficientnet_lite0", "weights": f"random (bundle: {err})"[:200], "outputs": 1}
    info["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    return model.eval().to(dev).to(memory_format=CL), info


def forward_fn(model: torch.nn.Module, dev: torch.device, bf16: bool, graphs: bool = False) -> Callable:
    # Autocast's weight-cast cache must be off inside a CUDA graph capture.
    def fwd(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=not graphs):
            return model(x)

    return fwd


def gpu_batch(cfg: Config, dev: torch.device, n: int) -> torch.Tensor:
    return (torch.rand(n, 1, cfg.size, cfg.size, device=dev) * 2 - 1).contiguous(memory_format=CL)


# -- model only, batch 256 -------------------------------------------------------------------


def model_only_eager(name: str, cfg: Config, dev: torch.device) -> dict[str, Any]:
    model, info = build(name, dev)
    x = gpu_batch(cfg, dev, cfg.batch)
    out: dict[str, Any] = {**info, "batch": cfg.batch, "size": cfg.size}
    with torch.inference_mode():
        nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
        xn = x.contiguous()
        out["fp32_nchw_img_s"] = best_rate(lambda: nchw(xn), cfg.batch, cfg, dev)
        out["fp32_cl_img_s"] = best_rate(lambda: model(x), cfg.batch, cfg, dev)
        fwd = forward_fn(model, dev, bf16=True)
        out["bf16_autocast_cl_img_s"] = best_rate(lambda: fwd(x), cfg.batch, cfg, dev)
        half = copy.deepcopy(model).to(torch.bfloat16)
        xb = x.to(torch.bfloat16)
        out["bf16_weights_cl_img_s"] = best_rate(lambda: half(xb), cfg.batch, cfg, dev)
    return out


def compiled_model(model: torch.nn.Module, dev: torch.device, bf16: bool, mode: str | None) -> Callable:
    return torch.compile(forward_fn(model, dev, bf16), mode=mode, dynamic=False)


# -- batch 1 predict ---------------------------------------------------------------------------


def predict_call(fn: Callable[[torch.Tensor], torch.Tensor], x_host: torch.Tensor, dev: torch.device) -> Callable:
    """One predict: host image tensor -> device -> model -> sigmoid -> host numpy."""

    def call() -> np.ndarray:
        x = x_host.to(dev, non_blocking=True).contiguous(memory_format=CL)
        return torch.sigmoid(fn(x).float()).cpu().numpy()

    return call


def cuda_graph_call(model: torch.nn.Module, x_host: torch.Tensor, dev: torch.device, bf16: bool) -> Callable:
    """Batch-1 predict replaying a CUDA graph recorded from the eager model (no compiler)."""
    fwd = forward_fn(model, dev, bf16, graphs=True)
    static_x = torch.zeros_like(x_host, device=dev).contiguous(memory_format=CL)
    stream = torch.cuda.Stream(dev)
    stream.wait_stream(torch.cuda.current_stream(dev))
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):
            fwd(static_x)
    torch.cuda.current_stream(dev).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_y = torch.sigmoid(fwd(static_x).float())

    def call() -> np.ndarray:
        static_x.copy_(x_host, non_blocking=True)
        graph.replay()
        return static_y.cpu().numpy()

    return call


def batch1_eager(name: str, cfg: Config, dev: torch.device) -> dict[str, Any]:
    model, info = build(name, dev)
    x_host = torch.rand(1, 1, cfg.size, cfg.size) * 2 - 1
    if dev.type == "cuda":
        x_host = x_host.pin_memory()
    out: dict[str, Any] = {"arch": info["arch"]}
    with torch.inference_mode():
        out["eager_fp32"] = latency(predict_call(forward_fn(model, dev, False), x_host, dev), cfg.latency_n)
        out["eager_bf16"] = latency(predict_call(forward_fn(model, dev, True), x_host, dev), cfg.latency_n)
    if dev.type == "cuda":
        for label, bf16 in (("cuda_graph_fp32", False), ("cuda_graph_bf16", True)):
            try:
                out[label] = latency(cuda_graph_call(model, x_host, dev, bf16), cfg.latency_n)
            except Exception as err:
                out[label] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    return out


# -- training ----------------------------------------------------------------------------------


def train_rate(name: str, cfg: Config, dev: torch.device, compile_: bool, ready: Callable[[], None]) -> dict:
    """Images/s of forward + backward + AdamW on a fixed device batch (bf16-mixed, channels-last)."""
    model, info = build(name, dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    x = gpu_batch(cfg, dev, cfg.train_batch)
    y = torch.randint(0, 2, (cfg.train_batch, info["outputs"]), device=dev).float()
    net = torch.compile(model) if compile_ else model

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = net(x)
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):
        step()
    sync(dev)
    warm_s = round(time.perf_counter() - t0, 1)
    ready()
    rate = best_rate(step, cfg.train_batch, cfg, dev, warmup=1)
    return {"arch": info["arch"], "batch": cfg.train_batch, "size": cfg.size, "compile": compile_,
            "warmup_compile_s": warm_s, "img_s": rate, "precision": "bf16-mixed", "memory_format": "channels_last"}  # fmt: skip


# -- JPEG files to probabilities ---------------------------------------------------------------


class FileBytes(torch.utils.data.Dataset):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with open(self.paths[i], "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


class PilDecoded(torch.utils.data.Dataset):
    """CPU path: PIL decode to gray, resize (antialiased bilinear) and normalise in the worker."""

    def __init__(self, paths: list[str], size: int, mean: float, std: float) -> None:
        self.paths, self.size, self.mean, self.std = paths, size, mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        x = torch.from_numpy(a)[None]
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True)[0]
        return (x - self.mean) / self.std


def _as_list(batch: list) -> list:
    return batch


def decode_on_device(datas: list[torch.Tensor], dev: torch.device, size: int, mean: float, std: float) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    imgs = decode_jpeg(datas, mode=ImageReadMode.GRAY, device=dev)
    x = torch.stack(list(imgs)).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return ((x - mean) / std).contiguous(memory_format=CL)


def files_rate(loader: Any, consume: Callable[[Any], None], n: int, dev: torch.device, warm_batches: int = 4) -> float:
    """Images/s of one whole pass over ``loader``, after a few warm-up batches have started its
    (persistent) workers and the GPU kernels: worker start-up is not part of the figure."""
    for i, batch in enumerate(loader):
        consume(batch)
        if i + 1 >= warm_batches:
            break
    sync(dev)
    t0 = time.perf_counter()
    for batch in loader:
        consume(batch)
    sync(dev)
    return round(n / (time.perf_counter() - t0), 1)


def files_to_proba(name: str, cfg: Config, dev: torch.device, paths: list[str], decode: str) -> dict[str, Any]:
    """JPEG files -> probabilities on the host, ``decode`` "device" (nvJPEG batch) or "cpu" (PIL workers)."""
    from torch.utils.data import DataLoader

    model, info = build(name, dev)
    mean, std = PREP[name]
    fwd = forward_fn(model, dev, bf16=dev.type == "cuda")
    results: list[np.ndarray] = []
    common = {"batch_size": cfg.batch, "persistent_workers": True, "num_workers": cfg.workers}
    if decode == "device":
        workers = min(cfg.workers, 4)  # the workers only read bytes
        common["num_workers"] = workers
        loader = DataLoader(FileBytes(paths), collate_fn=_as_list, **common)

        def consume(datas: list[torch.Tensor]) -> None:
            with torch.inference_mode():
                x = decode_on_device(datas, dev, cfg.size, mean, std)
                results.append(torch.sigmoid(fwd(x).float()).cpu().numpy())
    else:
        workers = cfg.workers
        loader = DataLoader(PilDecoded(paths, cfg.size, mean, std), pin_memory=dev.type == "cuda", **common)

        def consume(x: torch.Tensor) -> None:
            with torch.inference_mode():
                x = x.to(dev, non_blocking=True).contiguous(memory_format=CL)
                results.append(torch.sigmoid(fwd(x).float()).cpu().numpy())

    rate = files_rate(loader, consume, len(paths), dev)
    return {"arch": info["arch"], "decode": decode, "workers": workers, "rows": len(paths), "img_s": rate,
            "precision": "bf16" if dev.type == "cuda" else "fp32"}  # fmt: skip


def decode_only(cfg: Config, dev: torch.device, paths: list[str]) -> dict[str, Any]:
    """Decoder speed alone: nvJPEG batches of ``cfg.batch`` vs PIL in one CPU process."""
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    datas = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in paths]
    chunks = [datas[i : i + cfg.batch] for i in range(0, len(datas), cfg.batch)]

    def run_device() -> None:
        for c in chunks:
            decode_jpeg(c, mode=ImageReadMode.GRAY, device=dev)

    run_device()
    sync(dev)
    t0 = time.perf_counter()
    run_device()
    sync(dev)
    device_rate = len(datas) / (time.perf_counter() - t0)
    sample = paths[: min(len(paths), 300)]
    t0 = time.perf_counter()
    for p in sample:
        with Image.open(p) as im:
            np.asarray(im.convert("L"))
    cpu_rate = len(sample) / (time.perf_counter() - t0)
    with Image.open(paths[0]) as im:
        shape = im.size
    return {"images": len(datas), "image_px": shape, "device_batched_img_s": round(device_rate, 1),
            "pil_one_core_img_s": round(cpu_rate, 1), "device": str(dev)}  # fmt: skip
