"""Every GPU figure of issue 13 in one run of at most ~5 minutes, written as JSON.

    PYTHONPATH=src python benchmarks/gpu.py --out $OUT/gpu.json          # on the GPU machine
    PYTHONPATH=src python benchmarks/gpu.py --smoke --device cpu --out /tmp/gpu.json   # a CPU rehearsal

Each figure is for the shipped ``pneumonia`` model (EfficientNet-Lite0) beside DenseNet-121 (timm,
random weights) on the same path, at 224 px:

- model only, batch 256: fp32 NCHW, fp32 / bf16 channels-last (autocast and bf16 weights), and bf16
  channels-last through ``torch.compile``;
- JPEG files -> probabilities on the host: nvJPEG batch decode on the GPU vs PIL in CPU workers
  (2,000 generated 224 px JPEGs repeated to 10,000 rows; 1024 px JPEGs for pneumonia), and the
  same through cxrkit's Engine (``run_table`` with ``compile``, decode gpu/cpu); decoders alone;
- batch-1 predict p50/p95 (host tensor in, probabilities out): eager fp32/bf16, a CUDA graph of
  the eager model, ``torch.compile(mode="reduce-overhead")``, and the Engine with ``compile``;
- training images/s (forward + backward + fused AdamW, bf16-mixed, channels-last, batch 128, data
  already on the GPU), eager and compiled.

How it stays inside its time: compiled measures run in child processes that compile in parallel,
then measure one at a time (nothing else runs on the GPU or compiles while a figure is taken); the
eager measures run last, alone. A child that is not ready by the compile deadline is killed and
reported; every child writes its figures after each measure, so a timeout loses only what was left.
The JSON is rewritten after every phase: a run cut short still leaves the figures taken so far.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(1, str(ROOT / "src"))  # cxrkit without installing it (PYTHONPATH=src also works)

from gpu_measures import MODELS, Config, Recorder  # noqa: E402

EAGER_RESERVE_S = 90  # the eager child measures alone at the end
MEASURE_RESERVE_S = 5  # per compiled child, its measuring turn (a few seconds)
MEASURE_CAP_S = 40  # never more than this for one turn


def log(msg: str) -> None:
    print(f"[gpu.py {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- synthetic chest-X-ray-like JPEGs ------------------------------------------------------------


def _write_jpeg(args: tuple[str, int, int]) -> str:
    """A smooth gray image with two dark 'lung fields', ribs-like bands and noise, as an 8-bit JPEG."""
    import numpy as np
    from PIL import Image

    path, size, seed = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.55 + 0.25 * yy + 0.05 * np.sin(2 * np.pi * (yy * rng.uniform(6, 9) + rng.uniform()))
    for cx in (0.32, 0.68):
        cxj, cyj = cx + rng.normal(0, 0.02), 0.48 + rng.normal(0, 0.02)
        img -= 0.35 * np.exp(-(((xx - cxj) / 0.14) ** 2 + ((yy - cyj) / 0.28) ** 2))
    img += rng.normal(0, 0.03, img.shape)
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), mode="L").save(path, quality=90)
    return path


def write_jpegs(folder: Path, n: int, size: int) -> list[str]:
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"{i:05d}.jpg"), size, i) for i in range(n)]
    with ProcessPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) - 1))) as pool:
        return list(pool.map(_write_jpeg, jobs, chunksize=32))


# -- children ------------------------------------------------------------------------------------


def child_main(kind: str, cfg: Config, result: str, ready: str, go: str, deadline: float) -> None:
    """Run one child: ``kind`` is "eager", "engine" or "<what>:<model>" with what in b256/b1/train."""
    import torch

    dev = torch.device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if dev.type == "cuda" and kind != "eager":
        # Fixed shapes: let cuDNN pick its fastest kernels (as the Engine does). Not in the eager child:
        # its many shapes would each pay a search, and its figures are the plain baselines.
        torch.backends.cudnn.benchmark = True
    rec = Recorder(result, kind)

    def ready_and_wait() -> None:
        Path(ready).write_text("ready")
        while not Path(go).exists():
            if time.time() > deadline:
                raise TimeoutError("never given a turn to measure")
            time.sleep(0.05)

    if kind == "eager":
        eager_child(cfg, dev, rec)
    elif kind == "engine":
        rec.measure("engine", lambda: engine_child(cfg, dev, rec, ready_and_wait))
    else:
        what, name = kind.split(":")
        fn = {"b256": compiled_b256, "b1-fp32": compiled_b1, "b1-bf16": compiled_b1, "train": compiled_train}[what]
        if what.startswith("b1-"):
            fn = functools.partial(compiled_b1, bf16=what == "b1-bf16")
        rec.measure(kind, lambda: fn(name, cfg, dev, ready_and_wait))
    if not Path(ready).exists():
        Path(ready).write_text("done")


def eager_child(cfg: Config, dev: Any, rec: Recorder) -> None:
    import gpu_measures as gm
    import torch

    if dev.type == "cuda":
        rec.measure("device", lambda: {"name": torch.cuda.get_device_name(dev), "bf16": torch.cuda.is_bf16_supported()})
    for name in MODELS:
        rec.measure(f"model_only_eager:{name}", lambda n=name: gm.model_only_eager(n, cfg, dev))
    for name in MODELS:
        rec.measure(f"batch1_eager:{name}", lambda n=name: gm.batch1_eager(n, cfg, dev))
    rows = (cfg.jpeg_small * (cfg.table_rows // max(1, len(cfg.jpeg_small)) + 1))[: cfg.table_rows]
    for name in MODELS:
        for decode in ("device", "cpu"):
            rec.measure(
                f"files_to_proba:{name}:{decode}", lambda n=name, d=decode: gm.files_to_proba(n, cfg, dev, rows, d)
            )
    big = (cfg.jpeg_big * (cfg.big_rows // max(1, len(cfg.jpeg_big)) + 1))[: cfg.big_rows]
    for decode in ("device", "cpu"):
        rec.measure(
            f"files_to_proba_1024px:pneumonia:{decode}",
            lambda d=decode: gm.files_to_proba("pneumonia", cfg, dev, big, d),
        )
    rec.measure("decode_only:224px", lambda: gm.decode_only(cfg, dev, cfg.jpeg_small))
    rec.measure("decode_only:1024px", lambda: gm.decode_only(cfg, dev, cfg.jpeg_big))
    for name in MODELS:
        rec.measure(f"train_eager:{name}", lambda n=name: gm.train_rate(n, cfg, dev, False, lambda: None))


def compiled_b256(name: str, cfg: Config, dev: Any, ready: Any) -> dict[str, Any]:
    import gpu_measures as gm
    import torch

    model, info = gm.build(name, dev)
    x = gm.gpu_batch(cfg, dev, cfg.batch)
    fn = gm.compiled_model(model, dev, bf16=True, mode=None) if cfg.compile else gm.forward_fn(model, dev, True)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(2):
            fn(x)
        gm.sync(dev)
        compile_s = round(time.perf_counter() - t0, 1)
        ready()
        rate = gm.best_rate(lambda: fn(x), cfg.batch, cfg, dev)
    return {**info, "batch": cfg.batch, "size": cfg.size, "compile": cfg.compile, "compile_s": compile_s,
            "bf16_cl_compiled_img_s": rate}  # fmt: skip


def compiled_b1(name: str, cfg: Config, dev: Any, ready: Any, bf16: bool = False) -> dict[str, Any]:
    import gpu_measures as gm
    import torch

    model, info = gm.build(name, dev)
    x_host = torch.rand(1, 1, cfg.size, cfg.size) * 2 - 1
    if dev.type == "cuda":
        x_host = x_host.pin_memory()
    mode = "reduce-overhead" if dev.type == "cuda" else None
    out: dict[str, Any] = {"arch": info["arch"], "mode": mode, "compile": cfg.compile}
    label = "bf16" if bf16 else "fp32"
    t0 = time.perf_counter()
    with torch.no_grad():
        fn = gm.compiled_model(model, dev, bf16, mode) if cfg.compile else gm.forward_fn(model, dev, bf16)
        call = gm.predict_call(fn, x_host, dev)
        for _ in range(3):  # compile, then record the CUDA graph
            call()
        out["compile_s"] = round(time.perf_counter() - t0, 1)
        ready()
        out[f"compiled_{label}"] = gm.latency(call, cfg.latency_n)
    return out


def compiled_train(name: str, cfg: Config, dev: Any, ready: Any) -> dict[str, Any]:
    import gpu_measures as gm

    return gm.train_rate(name, cfg, dev, cfg.compile, ready)


def engine_child(cfg: Config, dev: Any, rec: Recorder, ready: Any) -> dict[str, Any]:
    """The shipped pneumonia bundle through cxrkit's Engine (compile + GPU decode), at ``cfg.size`` px."""
    import dataclasses

    import gpu_measures as gm
    import numpy as np
    import pandas as pd
    import torch

    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.data.table import CxrTable
    from cxrkit.models.bundle import load_bundle
    from cxrkit.models.engine import Engine, InferenceOptions

    bundle = load_bundle("pneumonia")
    bundle.preprocessing = dataclasses.replace(bundle.preprocessing, image_size=cfg.size)
    opts = InferenceOptions(
        batch_size=cfg.batch, num_workers=cfg.workers, compile=cfg.compile, device=cfg.device, decode="gpu"
    )
    eng = Engine(bundle, opts)
    t0 = time.perf_counter()
    eng.warmup()
    out: dict[str, Any] = {"describe": eng.describe(), "warmup_compile_s": round(time.perf_counter() - t0, 1)}
    eager = Engine(bundle, dataclasses.replace(opts, compile=False))
    cpu_decode = Engine(bundle, dataclasses.replace(opts, decode="cpu"))
    cpu_decode._compiled = eng._compiled  # the same compiled graphs (benchmark only)
    rows = (cfg.jpeg_small * (cfg.table_rows // max(1, len(cfg.jpeg_small)) + 1))[: cfg.table_rows]
    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    table = CxrTable(pd.DataFrame({"path": rows}), np.zeros((len(rows), 2), np.float32), space)
    warm = CxrTable(pd.DataFrame({"path": rows[: cfg.batch * 2]}), np.zeros((cfg.batch * 2, 2), np.float32), space)
    eng.run_table(warm, "proba")
    ready()
    x_dev = gm.gpu_batch(cfg, dev, cfg.batch)
    x1 = torch.rand(1, 1, cfg.size, cfg.size) * 2 - 1
    for label, e in (("compiled", eng), ("eager", eager)):
        out[f"b{cfg.batch}_{label}_img_s"] = gm.best_rate(lambda e=e: e.probabilities(x_dev), cfg.batch, cfg, dev)
        out[f"b1_{label}"] = gm.latency(lambda e=e: e.probabilities(x1), cfg.latency_n)
    for label, e in (("gpu_decode", eng), ("cpu_decode", cpu_decode)):
        t0 = time.perf_counter()
        e.run_table(table, "proba")
        out[f"files_to_proba_{label}"] = {"rows": len(rows), "img_s": round(len(rows) / (time.perf_counter() - t0), 1),
                                          "decode": e.decoder, "workers": cfg.workers}  # fmt: skip
    out["describe_after"] = eng.describe()
    return out


# -- orchestrator ---------------------------------------------------------------------------------


def _spawn(kind: str, cfg_path: Path, work: Path, deadline: float) -> dict[str, Any]:
    tag = kind.replace(":", "_")
    paths = {k: work / f"{tag}.{k}" for k in ("result", "ready", "go", "log")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--config", str(cfg_path)]
    cmd += ["--result", str(paths["result"]), "--ready", str(paths["ready"]), "--go", str(paths["go"])]
    cmd += ["--deadline", str(deadline)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=None, stderr=subprocess.STDOUT)
    return {"kind": kind, "proc": proc, "t0": time.time(), **paths}


def _kill(child: dict[str, Any]) -> None:
    proc = child["proc"]
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: compile workers go too
        proc.wait()


def _collect(child: dict[str, Any], note: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if child["result"].exists():
        data = json.loads(child["result"].read_text())
    if note:
        data["_status"] = note
    elif child["proc"].returncode not in (0, None):
        data["_status"] = f"exited with code {child['proc'].returncode}"
    data["_wall_s"] = round(time.time() - child["t0"], 1)
    return data


def run_all(cfg: Config, budget: float, out: Path, only: list[str] | None) -> dict[str, Any]:
    start = time.time()
    end = start + budget
    report: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                              "config": None, "children": {}, "machine": machine(cfg)}  # fmt: skip
    # The children share the GPU; where it admits one process only, they run one after another.
    sequential = "exclusive" in str(report["machine"].get("compute_mode", "")).lower()

    def save() -> None:
        report["elapsed_s"] = round(time.time() - start, 1)
        report["summary"] = summarize(report["children"])
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        os.replace(tmp, out)

    work = Path(tempfile.mkdtemp(prefix="cxrkit-gpu-"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor"))
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, (os.cpu_count() or 2) // 4)))
    compiled = [f"{w}:{m}" for m in MODELS for w in ("b256", "b1-fp32", "b1-bf16", "train")] + ["engine"]
    if only:
        compiled = [k for k in compiled if k in only]
    cfg_path = work / "config.json"
    cfg_path.write_text(json.dumps(asdict(cfg)))  # written again below once the JPEGs exist
    compile_deadline = end - (EAGER_RESERVE_S if not only or "eager" in only else 0) - MEASURE_RESERVE_S * len(compiled)
    # The children read the config once the JPEGs exist: write them first (a second or two).
    log(f"writing JPEGs to {work} ...")
    n_small, n_big = (2000, 200) if cfg.size >= 128 else (16, 4)
    cfg.jpeg_small = write_jpegs(work / "jpeg224", n_small, cfg.size)
    cfg.jpeg_big = write_jpegs(work / "jpeg1024", n_big, 1024 if cfg.size >= 128 else 96)
    cfg_path.write_text(json.dumps(asdict(cfg)))
    report["config"] = {k: v for k, v in asdict(cfg).items() if not k.startswith("jpeg")}
    report["config"].update({"jpeg_small": f"{n_small} x {cfg.size} px", "jpeg_big": f"{n_big} x 1024 px"})
    log(f"starting {len(compiled)} compile children; compile deadline in {compile_deadline - time.time():.0f}s")
    if sequential:
        log("the GPU is in an exclusive compute mode: children run one after another")
        run_sequential(compiled, cfg_path, work, end, report, save)
        save()
        return report
    children = [_spawn(k, cfg_path, work, end - 10) for k in compiled]
    pending = list(children)
    while pending and time.time() < compile_deadline:
        for c in list(pending):
            if c["ready"].exists() or c["proc"].poll() is not None:
                pending.remove(c)
                log(f"{c['kind']} ready after {time.time() - c['t0']:.0f}s")
        time.sleep(0.2)
    for c in pending:
        _kill(c)
        report["children"][c["kind"]] = _collect(c, f"killed: not compiled within {compile_deadline - start:.0f}s")
        log(f"{c['kind']} killed (compile deadline)")
    save()
    reserve = EAGER_RESERVE_S if not only or "eager" in only else 0
    measure_turns([c for c in children if c not in pending], end - reserve, report, save)
    if not only or "eager" in only:
        eager = _spawn("eager", cfg_path, work, end - 2)
        eager["go"].write_text("go")
        try:
            eager["proc"].wait(timeout=max(5.0, end - time.time()))
            report["children"]["eager"] = _collect(eager)
        except subprocess.TimeoutExpired:
            _kill(eager)
            report["children"]["eager"] = _collect(eager, "killed: out of time (figures so far kept)")
    save()
    log(f"done in {time.time() - start:.0f}s -> {out}")
    return report


def measure_turns(children: list[dict[str, Any]], until: float, report: dict, save: Any) -> None:
    """Let each compiled child measure alone, one after another."""
    for c in children:
        if c["proc"].poll() is None:
            c["go"].write_text("go")
            try:
                c["proc"].wait(timeout=min(MEASURE_CAP_S, max(MEASURE_RESERVE_S, until - time.time())))
            except subprocess.TimeoutExpired:
                _kill(c)
                report["children"][c["kind"]] = _collect(c, "killed: measuring took too long")
                log(f"{c['kind']} killed (measuring took too long)")
                save()
                continue
        report["children"][c["kind"]] = _collect(c)
        log(f"{c['kind']} measured")
        save()


def machine(cfg: Config) -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    info["cuda"] = torch.version.cuda
    info.update(nvidia_smi() if cfg.device.startswith("cuda") else {})
    for mod in ("torchvision", "timm", "onnxruntime", "lightning"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as err:
            info[mod] = f"missing ({type(err).__name__})"
    return info


def nvidia_smi() -> dict[str, Any]:
    """GPU name, memory, driver and compute mode without creating a CUDA context in this process."""
    fields = "name,memory.total,driver_version,compute_mode"
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip().splitlines()[0]  # fmt: skip
    except Exception as err:
        return {"gpu": f"unknown (nvidia-smi: {type(err).__name__})"}
    return dict(
        zip(("gpu", "gpu_memory", "driver", "compute_mode"), (v.strip() for v in line.split(",")), strict=False)
    )


def run_sequential(kinds: list[str], cfg_path: Path, work: Path, end: float, report: dict, save: Any) -> dict:
    """Fallback for a GPU that admits one process: each child compiles and measures alone, in turn."""
    for kind in [*kinds, "eager"]:
        left = end - time.time()
        if left < 10:
            report["children"][kind] = {"_status": "skipped: out of time"}
            continue
        c = _spawn(kind, cfg_path, work, end - 2)
        c["go"].write_text("go")
        try:
            c["proc"].wait(timeout=left if kind == "eager" else max(5.0, min(left - 20, 90)))
            report["children"][kind] = _collect(c)
        except subprocess.TimeoutExpired:
            _kill(c)
            report["children"][kind] = _collect(c, "killed: out of time")
        save()
    return report


def _get(children: dict[str, Any], child: str, key: str, *path: str) -> Any:
    value: Any = (children.get(child) or {}).get(key)
    for p in path:
        value = value.get(p) if isinstance(value, dict) else None
    return value


def _best(values: dict[str, Any], lower: bool = False) -> tuple[str | None, Any]:
    ok = {k: v for k, v in values.items() if isinstance(v, int | float)}
    if not ok:
        return None, None
    k = (min if lower else max)(ok, key=ok.get)
    return k, ok[k]


def summarize(ch: dict[str, Any]) -> dict[str, Any]:
    """The issue's target table: pneumonia on its best path, DenseNet-121 on that same path."""
    rows: dict[str, Any] = {}

    def paths_b256(m: str) -> dict[str, Any]:
        eager = _get(ch, "eager", f"model_only_eager:{m}") or {}
        d = {k: v for k, v in eager.items() if k.endswith("_img_s")}
        d["bf16_cl_compiled_img_s"] = _get(ch, f"b256:{m}", f"b256:{m}", "bf16_cl_compiled_img_s")
        return d

    def paths_b1(m: str) -> dict[str, Any]:
        d = {k: (v or {}).get("p50_ms") for k, v in (_get(ch, "eager", f"batch1_eager:{m}") or {}).items()
             if isinstance(v, dict)}  # fmt: skip
        for p in ("fp32", "bf16"):
            d[f"compiled_{p}"] = _get(ch, f"b1-{p}:{m}", f"b1-{p}:{m}", f"compiled_{p}", "p50_ms")
        return d

    def paths_files(m: str) -> dict[str, Any]:
        return {d: _get(ch, "eager", f"files_to_proba:{m}:{d}", "img_s") for d in ("device", "cpu")}

    def paths_train(m: str) -> dict[str, Any]:
        return {
            "eager": _get(ch, "eager", f"train_eager:{m}", "img_s"),
            "compiled": _get(ch, f"train:{m}", f"train:{m}", "img_s"),
        }

    for row, fn, lower, target in (
        ("model_only_b256_img_s", paths_b256, False, 30000),
        ("files_to_proba_img_s", paths_files, False, 5000),
        ("batch1_predict_p50_ms", paths_b1, True, 2.0),
        ("train_img_s", paths_train, False, 3000),
    ):
        pn, dn = fn("pneumonia"), fn("densenet121")
        path, value = _best(pn, lower)
        dense = dn.get(path) if path else None
        meets = None if value is None else (value <= target if lower else value >= target)
        rows[row] = {"pneumonia": value, "path": path, "densenet121_same_path": dense, "target": target,
                     "meets_target": meets, "all_paths": {"pneumonia": pn, "densenet121": dn}}  # fmt: skip
        if isinstance(value, int | float) and isinstance(dense, int | float) and dense:
            rows[row]["ratio_vs_densenet121"] = round(dense / value if lower else value / dense, 2)
    eng = (ch.get("engine") or {}).get("engine")
    if isinstance(eng, dict):
        rows["engine"] = {k: v for k, v in eng.items() if k.startswith(("b", "files", "describe"))}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu.json", help="JSON written here (rewritten after every phase)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=280.0, help="seconds for the whole run")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a rehearsal of every code path")
    ap.add_argument("--no-compile", action="store_true", help="the compiled measures run eagerly")
    ap.add_argument("--only", nargs="*", help="children to run (eager, engine, b256:pneumonia, ...)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--ready", help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.child, Config.load(args.config), args.result, args.ready, args.go, args.deadline)
        return
    cfg = Config(device=args.device, compile=not args.no_compile, repo_src=str(ROOT / "src"))
    cfg.workers = max(1, min(12, (os.cpu_count() or 2) - 2))
    if args.smoke:
        cfg.size, cfg.batch, cfg.train_batch, cfg.iters, cfg.rounds = 64, 8, 4, 2, 2
        cfg.latency_n, cfg.table_rows, cfg.big_rows, cfg.workers, cfg.threads = 5, 32, 8, 1, 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = run_all(cfg, args.budget, out, args.only)
    print(json.dumps(report["summary"], indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
