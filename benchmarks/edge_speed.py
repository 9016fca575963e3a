"""Benchmark: each vertical's inference, edge form (no PyTorch) against the full install.

    python benchmarks/edge_speed.py [--quick] [--only medical|manufacturing|finance]

Every measurement runs in a fresh process. The edge runs hide PyTorch from that process
(``sys.modules["torch"] = None``, so an import fails as in an install without it) and so run
what ``pip install "deepseek-<vertical>[edge]"`` runs: the packaged ONNX exports on
onnxruntime, the finance fast path compiled from the safetensors file with numpy. The same
library versions serve both forms (``benchmarks/install_size.py`` measures the installs
themselves). Each row reports the start-up (imports + model ready, in the process) and the
work, and the edge outputs are compared with the full ones from the same inputs:

* medical: ``NoduleDetector`` on a phantom CT (default 512x512x300 at 0.7x0.7x1.0 mm;
  --quick 256x256x100 at 1.4x1.4x1.0 mm, the same field of view): the PyTorch model
  (``full``), the PyTorch model with the 1 mm grid and the lung mask computed by SimpleITK,
  as the full form did before the edge form dropped it (``full-itk``), and the packaged ONNX
  export with SimpleITK hidden too (``edge``: the grid and masks on numpy,
  :mod:`deepseek.medical.morphology`); candidates compared;
* manufacturing: ``DefectStream`` over a synthetic 640x480 video (3000 frames; --quick 600;
  a video needs OpenCV, the ``[video]`` extra, in every form) with the PyTorch step, the
  onnxruntime step exported at run time (the full install's default), and the packaged
  free-size export (edge); per-frame scores compared; then ``score_image`` on synthetic
  photos of KolektorSDD's size (500x1264; 32, --quick 8) under 1 and 4 views, with PyTorch
  (``score --backend torch``; the full install's photo path before 7 Dec 2026) and with the
  packaged still-photo export (edge, and the full install's default since), and on
  the edge also through the streaming step alone (an export without its still-photo graph),
  and in the full install through the photo decision (``model.photo.onnx``, the graph
  ``deepseek serve`` answers photos with) on onnxruntime; photo score logits compared;
* finance: the ``tick-mlp`` fast path over synthetic ticks (200,000; --quick 50,000):
  compiled from the PyTorch module vs from the safetensors file; per-tick ``on_tick`` latency
  and the ``decide`` loop; decisions compared.

Goals: the edge outputs equal the full ones (candidates within 1e-4 in probability of the
``full-itk`` ones, stream scores within 1e-4, photo score logits within 1e-3 from the
still-photo export, the photo decision's probabilities within 1e-5, identical tick
decisions). Speeds are reported, not goals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402

T_PROCESS = time.perf_counter()


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def work_medical(mode: str, data: str) -> dict:
    from deepseek.loader import ModelLoader
    from deepseek.medical.detector import NoduleDetector
    from deepseek.medical.dicom import DICOMReader

    vol = DICOMReader(data, progress=False).load()
    t0 = time.perf_counter()
    model = ModelLoader.load("lung-nodule-attention", device="cpu",
                             framework="onnx" if mode == "edge" else "pytorch")
    det = NoduleDetector(model, progress=False)
    ready = time.perf_counter() - T_PROCESS
    t_load = time.perf_counter() - t0
    cands = det.detect(vol, series_uid="bench")
    return {"backend": det.net.name, "ready_s": ready, "model_load_s": t_load,
            "detect_s": det.timings["total"], "inference_s": det.timings["inference"],
            "tta_s": det.timings.get("tta", 0.0), "peak_rss_gib": _rss_gib(),
            "out": [[*c["xyz"], c["probability"]] for c in cands]}


def use_simpleitk() -> None:
    """Swap the detector's numpy grid and masks for SimpleITK's (the ``full-itk`` row)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.medical.itk_reference import use_simpleitk as swap

    swap()


def work_manufacturing(mode: str, data: str) -> dict:
    from deepseek.manufacturing.stream import DefectStream, load_net
    from deepseek.readers import open as open_source

    t0 = time.perf_counter()
    backend = {"edge": "onnxruntime", "full-onnx": "onnxruntime", "full-torch": "torch"}[mode]
    net = load_net("defect-3dcnn-lstm", onnx=mode == "edge")
    stream = DefectStream(open_source(data, kind="frames", policy="block"), model=net,
                          backend=backend)
    stream.warm_up()
    ready = time.perf_counter() - T_PROCESS
    t_load = time.perf_counter() - t0
    rep = stream.run()
    res = {"backend": rep.backend, "ready_s": ready, "model_load_s": t_load, "fps": rep.fps,
           "latency_ms": rep.latency_ms, "frames": rep.frames, "out": [float(s) for s in
                                                                       rep.scores]}
    if mode != "full-onnx":  # photos: on PyTorch (--backend torch) and on the exports
        res.update(score_photos(net, mode))
    return {**res, "peak_rss_gib": _rss_gib()}


#: the photos ``score`` is timed on: KolektorSDD's size (500 wide, 1264 tall), drawn by the
#: synthetic line (the content does not change the work, only the size does)
PHOTO_SIZE = (1264, 500)


def score_photos(net: object, mode: str) -> dict:
    """``score_image`` on synthetic photos under 1 and 4 views: ms per photo and the scores;
    on the edge also through the streaming step alone (each photo encoded once per frame it
    is held for, as an export without its still-photo graph does)."""
    from deepseek.manufacturing.score import score_image
    from deepseek.manufacturing.synthetic import SyntheticLine

    n = int(os.environ["EDGE_SPEED_PHOTOS"])
    line = SyntheticLine(seed=710_000, frames=n, height=PHOTO_SIZE[0], width=PHOTO_SIZE[1])
    photos = [line.frame(i) for i in range(n)]

    def timed(key: str) -> dict:
        out: dict = {}
        for views in (1, 4):
            score_image(net, photos[0], views=views)  # warm-up
            t0 = time.perf_counter()
            scores = [score_image(net, p, views=views)[0] for p in photos]
            out[f"views_{views}"] = (time.perf_counter() - t0) / n * 1e3
            # compared as logits: photos of the synthetic line score near 1, where
            # probabilities would hide a difference
            out[f"scores_{views}"] = [math.log(s) - math.log1p(-s) for s in scores]
        return {f"{key}_ms": {k: v for k, v in out.items() if k.startswith("views")},
                f"{key}_out": {k: v for k, v in out.items() if k.startswith("scores")}}

    res = timed("photo")
    if mode == "edge":
        net.still_session = None  # type: ignore[attr-defined]
        res.update(timed("photo_step"))
        res.pop("photo_step_out")
    if mode == "full-torch":
        res.update(photo_decision(net, photos))
    return res


def photo_decision(net: object, photos: list) -> dict:
    """The photo decision (``model.photo.onnx``, what ``deepseek serve`` serves for photos:
    the same path as ``score_image`` in one graph) exported from ``net`` under 1 and 4 views
    and run on onnxruntime, in-process (no server): ms per photo and the scores, as the
    float32 probabilities it answers (near 1 their float32 steps, 6e-8, are up to 0.01 in
    logit, so they are compared as probabilities)."""
    import onnxruntime as ort

    from deepseek.manufacturing.model import export_photo_onnx

    ms, out = {}, {}
    for views in (1, 4):
        graph = export_photo_onnx(net, 0.5, views=views)  # type: ignore[arg-type]
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        session.run(None, {"image": photos[0][None]})  # warm-up
        t0 = time.perf_counter()
        out[f"scores_{views}"] = [float(session.run(None, {"image": p[None]})[0][0])
                                  for p in photos]
        ms[f"views_{views}"] = (time.perf_counter() - t0) / len(photos) * 1e3
    return {"photo_decision_ms": ms, "photo_decision_out": out}


def work_finance(mode: str, data: str) -> dict:
    import numpy as np

    from deepseek.finance.fastpath import FastPath
    from deepseek.finance.synthetic import synthetic_ticks
    from deepseek.finance.ticks import tick_args

    n = int(data)
    ticks = synthetic_ticks(n, seed=11)
    t0 = time.perf_counter()
    if mode == "edge":
        from deepseek.finance.strategy import fast_path

        fp = fast_path("tick-mlp")
    else:
        from deepseek.loader import ModelLoader

        fp = FastPath.from_model(ModelLoader.load("tick-mlp", device="cpu"))
    ready = time.perf_counter() - T_PROCESS
    t_load = time.perf_counter() - t0
    args = [tick_args(t) for t in ticks]
    lat = np.empty(len(args))
    on_tick, clock = fp.on_tick, time.perf_counter_ns
    for i, a in enumerate(args):
        s = clock()
        on_tick(*a)
        lat[i] = clock() - s
    fp.reset()
    fp.decide(ticks[:100])  # compiles the loop (numba) before it is timed
    fp.reset()
    t1 = time.perf_counter()
    dec = fp.decide(ticks)
    loop = time.perf_counter() - t1
    return {"backend": "numba fast path", "ready_s": ready, "model_load_s": t_load,
            "on_tick_us": {"p50": float(np.percentile(lat, 50)) / 1e3,
                           "p99": float(np.percentile(lat, 99)) / 1e3},
            "decide_ticks_per_s": len(ticks) / loop, "peak_rss_gib": _rss_gib(),
            "out": dec.tolist()}


WORK = {"medical": work_medical, "manufacturing": work_manufacturing, "finance": work_finance}
MODES = {"medical": ["full", "full-itk", "edge"],
         "manufacturing": ["full-torch", "full-onnx", "edge"], "finance": ["full", "edge"]}


def run(vertical: str, mode: str, data: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", vertical, mode, data]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{vertical} {mode} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else _round(v) if isinstance(v, dict)
                else v) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs (sizes in the output)")
    ap.add_argument("--only", choices=sorted(WORK), action="append")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        vertical, mode, data = args.worker
        if mode == "edge":
            sys.modules["torch"] = None  # type: ignore[assignment]  # as if not installed
            if vertical == "medical":
                sys.modules["SimpleITK"] = None  # type: ignore[assignment]
        if mode == "full-itk":
            use_simpleitk()
        res = WORK[vertical](mode, data)
        if mode == "edge":
            assert not any(k == "torch" or k.startswith("torch.") for k, v in sys.modules.items()
                           if v is not None), "the edge run imported PyTorch"
        print(json.dumps(res))
        return
    verticals = args.only or sorted(WORK)
    results: dict = {}
    goals = []
    with tempfile.TemporaryDirectory(prefix="edge-speed-") as tmp:
        for v in verticals:
            if v == "medical":
                from deepseek.medical.synthetic import write_phantom

                size, slices = (256, 100) if args.quick else (512, 300)
                px = 0.7 * 512 / size  # the same field of view: the whole chest
                write_phantom(Path(tmp) / "ct", seed=520_000, size=size, slices=slices,
                              pixel_spacing=px, slice_step=1.0, n_nodules=10)
                data, inputs = str(Path(tmp) / "ct"), {"ct": f"{size}x{size}x{slices}, "
                                                              f"{px:g}x{px:g}x1.0 mm phantom"}
            elif v == "manufacturing":
                from deepseek.manufacturing.synthetic import SyntheticLine, write_video

                frames = 600 if args.quick else 3000
                data = str(write_video(Path(tmp) / "line.avi",
                                       SyntheticLine(seed=700_000, frames=frames),
                                       progress=False)[0])
                photos = 8 if args.quick else 32
                os.environ["EDGE_SPEED_PHOTOS"] = str(photos)
                inputs = {"video": f"{frames} frames, 640x480 MJPG",
                          "photos": f"{photos} synthetic photos, {PHOTO_SIZE[1]}x"
                                    f"{PHOTO_SIZE[0]}"}
            else:
                n = 50_000 if args.quick else 200_000
                data, inputs = str(n), {"ticks": n}
            rows = {m: run(v, m, data) for m in MODES[v]}
            edge = rows["edge"]
            ref = rows["full"] if "full" in rows else rows["full-onnx"]
            if v == "medical":
                a, b = edge["out"], rows["full-itk"]["out"]
                same = len(a) == len(b) and all(
                    max(abs(x - y) for x, y in zip(p[:3], q[:3])) < 1e-2
                    and abs(p[3] - q[3]) < 1e-4 for p, q in zip(a, b))
                goals.append(goal("medical: edge candidates (ONNX, numpy grid and masks) equal "
                                  "the full form's (PyTorch, SimpleITK grid and masks) "
                                  f"({inputs['ct']})", float(same), "1", "bool", same))
            elif v == "manufacturing":
                import numpy as np

                err = float(np.abs(np.subtract(edge["out"], rows["full-torch"]["out"])).max())
                goals.append(goal("manufacturing: edge frame scores vs PyTorch, max difference "
                                  f"({inputs['video']})", round(err, 7), "<= 1e-4", "",
                                  err <= 1e-4))
                a, b = edge.pop("photo_out"), rows["full-torch"].pop("photo_out")
                err = max(float(np.abs(np.subtract(a[k], b[k])).max()) for k in a)
                goals.append(goal("manufacturing: edge photo score logits (still-photo "
                                  "export) vs PyTorch under 1 and 4 views, max difference "
                                  f"({inputs['photos']})", float(f"{err:.2e}"), "<= 1e-3",
                                  "logit", err <= 1e-3))
                a = rows["full-torch"].pop("photo_decision_out")
                err = max(float(np.abs(np.subtract(a[k], 1 / (1 + np.exp(-np.array(b[k]))))
                                       ).max()) for k in a)
                goals.append(goal("manufacturing: photo decision (model.photo.onnx, what "
                                  "serve answers) scores vs PyTorch under 1 and 4 views, max "
                                  f"difference ({inputs['photos']})", float(f"{err:.2e}"),
                                  "<= 1e-5", "probability", err <= 1e-5))
            else:
                same = edge["out"] == ref["out"]
                goals.append(goal(f"finance: edge decisions identical to the full install's "
                                  f"({inputs['ticks']} ticks)", float(same), "1", "bool", same))
            for r in rows.values():
                r.pop("out")
            results[v] = {"inputs": inputs, "rows": {m: _round(r) for m, r in rows.items()}}
    emit("edge_speed", results, goals, quick=args.quick)


if __name__ == "__main__":
    main()
