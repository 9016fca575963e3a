"""Benchmark: DICOMReader.load() against SimpleITK's ImageSeriesReader on the same folder.

Writes an uncompressed 512x512x300 phantom series (``--quick``: 256x256x100), then reads it
in fresh subprocesses (after one warm-up read each, so both read from the page cache) and
reports the best of ``--repeat`` times, the ratio ours/SimpleITK, the peak memory each read
added to its process (max RSS after minus RSS before), and whether the HU agree exactly.

Uneven spacing: a phantom written at 1 mm steps (the truth; 256x256x120, ``--quick``
128x128x120) is thinned to an uneven series, 4 mm steps for the first half of the span and
7 mm after (the step change of a real GE series), and read with ``on_gap="resample"``. The
figure is the mean |HU error| inside the body at the original slices' true positions: the
equalised volume interpolated along z at each position against the original slice there. Its
peer is SimpleITK's ImageSeriesReader on the same uneven files, which puts them on an even
grid: its slice k at its claimed position against the truth there. The error of every
equalised slice against the 1 mm truth is reported too (what interpolating across a 7 mm
gap costs, whoever does it). Near-duplicate: every third slice of the 1 mm series plus a copy
of one of them 0.05 mm away, read with ``on_gap="resample"``: the slices made (bounded by the
grid rule; the old smallest-step rule made one every 0.05 mm) and the HU error at the true
positions.

    python benchmarks/dicom_load.py [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, goal  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(kind: str, folder: str, repeat: int) -> None:
    import pydicom  # noqa: F401  (imports are not part of the measured memory)
    import SimpleITK as sitk
    import tqdm.auto  # noqa: F401

    from deepseek.medical.dicom import DICOMReader

    def ours():
        return DICOMReader(folder, progress=False).load(normalize=False).array

    def theirs():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(folder))
        return sitk.GetArrayFromImage(r.Execute())

    fn = ours if kind == "ours" else theirs
    before = _rss_mb()
    arr = fn()  # warm-up (page cache, imports) and the memory measurement
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    volume_mb = arr.nbytes / 2**20
    del arr
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        arr = fn()
        times.append(time.perf_counter() - t0)
        del arr
    print(json.dumps({"seconds": min(times), "all_seconds": times,
                      "peak_added_mb": peak - before, "volume_mb": volume_mb,
                      }))


def uneven(size: int, workdir: Path) -> tuple[dict, list]:
    import shutil

    import numpy as np
    import pydicom
    import SimpleITK as sitk

    from deepseek.medical import DICOMReader
    from deepseek.medical.synthetic import write_phantom

    fine = workdir / "fine"
    write_phantom(fine, seed=5, size=size, slices=120, slice_step=1.0, n_nodules=8,
                  pixel_spacing=0.7 * 512 / size)
    truth_vol = DICOMReader(fine, progress=False).load()
    truth = truth_vol.array
    z0 = truth_vol.origin[2]
    # the files in slice order along z (the reader's order), then keep 4 mm steps, then 7 mm
    order = sorted(fine.glob("*.dcm"), key=lambda f: float(
        pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    keep = list(range(0, 60, 4)) + list(range(60, 120, 7))
    part = workdir / "uneven"
    part.mkdir()
    for k in keep:
        shutil.copy(order[k], part / order[k].name)
    eq = DICOMReader(part, progress=False, on_gap="resample").load()
    steps = sorted({round(b - a, 3) for a, b in zip(keep, keep[1:])})
    body = truth > -900

    def at_z(vol, z):  # linear along z of a volume with an axial grid
        f = (z - vol.origin[2]) / vol.spacing[2]
        lo = int(np.clip(np.floor(f), 0, vol.shape[0] - 2))
        w = f - lo
        return (1 - w) * vol.array[lo] + w * vol.array[lo + 1]

    err_true = [np.abs(at_z(eq, z0 + k) - truth[k])[body[k]].mean() for k in keep]
    grid_z = eq.origin[2] + eq.spacing[2] * np.arange(eq.shape[0])
    err_grid = [np.abs(eq.array[i] - at_z(truth_vol, z))[body[int(round(z - z0))]].mean()
                for i, z in enumerate(grid_z)]
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(part)))
    img = r.Execute()
    their = sitk.GetArrayFromImage(img).astype(np.float32)
    claimed = img.GetOrigin()[2] + img.GetSpacing()[2] * np.arange(their.shape[0])
    err_sitk = []
    for k, z in enumerate(claimed):
        j = int(np.clip(round(z - z0), 0, 119))
        err_sitk.append(np.abs(their[k] - truth[j])[body[j]].mean())
    results = {
        "series": {"size": size, "truth_slices_1mm": 120, "kept_slices": len(keep),
                   "steps_mm": steps},
        "ours_resample": {"slices": int(eq.shape[0]), "step_mm": round(eq.spacing[2], 4),
                          "mean_abs_hu_at_true_positions": round(float(np.mean(err_true)), 3),
                          "max_slice_mean_abs_hu_at_true_positions":
                              round(float(np.max(err_true)), 3),
                          "mean_abs_hu_every_slice_vs_1mm_truth":
                              round(float(np.mean(err_grid)), 2)},
        "simpleitk_even_grid": {"slices": int(their.shape[0]),
                                "step_mm": round(img.GetSpacing()[2], 4),
                                "mean_abs_hu_at_claimed_positions":
                                    round(float(np.mean(err_sitk)), 2)},
    }
    value = float(np.mean(err_true))
    goals = [goal("uneven series: HU error at true slice positions of the equalised volume",
                  round(value, 3), "<= 20", "HU", value <= 20)]
    # a near-duplicate: every third slice (3 mm) plus a copy of one 0.05 mm from it
    from pydicom.uid import generate_uid

    near = workdir / "near"
    near.mkdir()
    keep3 = list(range(0, 120, 3))
    for k in keep3:
        shutil.copy(order[k], near / order[k].name)
    ds = pydicom.dcmread(order[60])
    ds.SOPInstanceUID = generate_uid()
    ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [
        float(ds.ImagePositionPatient[2]) + 0.05]
    ds.save_as(near / "near-duplicate.dcm")
    eqn = DICOMReader(near, progress=False, on_gap="resample").load()
    err_near = [np.abs(at_z(eqn, z0 + k) - truth[k])[body[k]].mean() for k in keep3]
    span = keep3[-1] - keep3[0]
    results["near_duplicate"] = {
        "series": f"{len(keep3)} slices at 3 mm plus a copy of one 0.05 mm from it",
        "slices_in": len(keep3) + 1, "slices_out": int(eqn.shape[0]),
        "step_mm": round(eqn.spacing[2], 4),
        "slices_the_smallest_step_rule_made": int(np.ceil(span / 0.05)) + 1,
        "mean_abs_hu_at_true_positions": round(float(np.mean(err_near)), 3)}
    goals.append(goal("near-duplicate slice: equalised slices / distinct slices",
                      round(eqn.shape[0] / len(keep3), 3), "<= 1.0", "ratio",
                      eqn.shape[0] <= len(keep3)))
    goals.append(goal("near-duplicate slice: HU error at true slice positions",
                      round(float(np.mean(err_near)), 3), "<= 20", "HU",
                      float(np.mean(err_near)) <= 20))
    return results, goals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256x256x100 instead of 512x512x300")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the phantom here and keep it")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.repeat)
        return
    import numpy as np
    import SimpleITK as sitk

    from deepseek.medical import DICOMReader
    from deepseek.medical.synthetic import write_phantom

    size, slices = (256, 100) if args.quick else (512, 300)
    tmp = None
    if args.keep:
        folder = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="dicom-bench-")
        folder = Path(tmp.name)
    t0 = time.perf_counter()
    if not any(folder.glob("*.dcm")):
        write_phantom(folder, seed=0, size=size, slices=slices, slice_step=1.0, n_nodules=10,
                      pixel_spacing=0.7)
    t_write = time.perf_counter() - t0

    runs = {}
    for kind in ("ours", "simpleitk"):
        res = subprocess.run([sys.executable, __file__, "--repeat", str(args.repeat),
                              "--worker", "ours" if kind == "ours" else "sitk", str(folder)],
                             capture_output=True, text=True, check=True)
        runs[kind] = json.loads(res.stdout.strip().splitlines()[-1])

    ours = DICOMReader(folder, progress=False).load().array
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    theirs = sitk.GetArrayFromImage(r.Execute())
    identical = bool(np.array_equal(ours, theirs.astype(np.float32)))
    ratio = runs["ours"]["seconds"] / runs["simpleitk"]["seconds"]
    mem_ratio = runs["ours"]["peak_added_mb"] / runs["ours"]["volume_mb"]
    results = {
        "series": {"size": size, "slices": slices, "transfer_syntax": "explicit VR little endian",
                   "volume_mb_float32": runs["ours"]["volume_mb"],
                   "phantom_write_seconds": round(t_write, 2)},
        "ours": runs["ours"],
        "simpleitk": runs["simpleitk"],
        "time_ratio_ours_over_simpleitk": ratio,
        "peak_memory_over_volume": mem_ratio,
        "hu_identical_to_simpleitk": identical,
    }
    goals = [
        goal("load time ratio ours / SimpleITK", round(ratio, 3), "<= 1.0", "ratio", ratio <= 1.0),
        goal("peak memory / final volume", round(mem_ratio, 3), "<= 2x", "ratio", mem_ratio <= 2.0),
        goal("HU identical to SimpleITK", identical, "identical", "bool", identical),
    ]
    with tempfile.TemporaryDirectory(prefix="dicom-uneven-") as work:
        results["uneven_spacing"], more = uneven(128 if args.quick else 256, Path(work))
    goals += more
    emit("dicom_load", results, goals, quick=args.quick)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
