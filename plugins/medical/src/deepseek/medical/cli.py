"""``deepseek medical ...`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from deepseek.medical import __version__
from deepseek.medical import nodule_grid as grid  # the detector's defaults


@click.group("medical")
@click.version_option(__version__, "--version", prog_name="deepseek-medical",
                      message="%(prog)s %(version)s")
def medical() -> None:
    """Medical imaging: CT DICOM series to Hounsfield volumes, physical-space resampling,
    lung-nodule detection (LUNA16 FROC/CPM).

    \b
    info      the series in a folder, or what an image file holds
    generate  write a synthetic chest CT phantom series + annotations.csv
    train     train a nodule detector (phantom patches or a LUNA16 folder)
    evaluate  LUNA16 FROC / CPM of a results CSV against annotations
    convert   a series or image to .nii.gz / .mhd / .nrrd, optionally resampled
    detect    find lung nodules in a CT

    Inputs go through the reader registry (`deepseek readers`): DICOM folders (searched
    recursively), DICOMDIR, single or enhanced multi-frame files, LUNA16 .mhd/.raw, NIfTI
    (.nii, .nii.gz), NRRD, and synthetic:?seed=N phantoms.
    """


def _echo(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@medical.command("info")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(path: str, as_json: bool) -> None:
    """List the series found under PATH (a DICOM folder, DICOMDIR or file), or describe an
    image file (.mhd, .nii.gz, .nrrd) or a synthetic: phantom URI."""
    from deepseek.medical.dicom import discover, series_geometry
    from deepseek.readers import resolve

    entry = resolve(path, kind="volume")
    if entry.name != "dicom":
        vol = entry.obj(path)
        row = {"source": path, "reader": entry.name, "shape_zyx": list(vol.shape),
               "spacing_xyz": list(vol.spacing), "origin_xyz": list(vol.origin)}
        _echo(row, as_json, "\n".join(f"{k}: {v}" for k, v in row.items()))
        return
    series, skipped = discover(path)
    geometry = [series_geometry(s) for s in series]
    if as_json:
        click.echo(json.dumps({"series": [{**s.to_dict(), "geometry": g}
                                          for s, g in zip(series, geometry)],
                               "skipped": skipped}, indent=2))
        return
    if not series:
        click.echo(f"no DICOM images under {path}" + (f" (skipped: {skipped})" if skipped else ""))
        return
    header = ["series uid", "description", "mod", "orient", "slices", "size", "geometry",
              "transfer syntax"]
    rows = []
    from pydicom.uid import UID

    for s, g in zip(series, geometry):
        rows.append([s.uid, s.description[:28], s.modality, s.orientation, str(s.n_slices),
                     f"{s.rows}x{s.cols}", _geometry_text(g),
                     ", ".join(UID(t).name for t in s.transfer_syntaxes)])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if skipped:
        click.echo("skipped: " + ", ".join(f"{n} {what}" for what, n in skipped.items()))


def _geometry_text(g: dict) -> str:
    """One cell: the step, then what is not regular (tilt, gaps, step changes, duplicates)."""
    if "step_mm" not in g:
        return "-"
    parts = [f"step {g['step_mm']:g} mm"]
    if g.get("tilt_deg"):
        parts.append(f"tilt {g['tilt_deg']:g} deg")
    for gap in g.get("gaps", []):
        parts.append(f"{gap['missing_slices']} missing after {gap['from_mm']:.1f} mm")
    for c in g.get("spacing_changes", []):
        parts.append(f"step {c['from_step_mm']:g}->{c['to_step_mm']:g} mm at {c['at_mm']:.1f}")
    if g.get("uneven"):
        parts.append(f"{len(g['uneven'])} uneven step(s)")
    if g.get("duplicate_positions"):
        parts.append(f"{g['duplicate_positions']} duplicate position(s)")
    return "; ".join(parts)


@medical.command("convert")
@click.argument("path")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--spacing", nargs=3, type=float, default=None, metavar="X Y Z",
              help="Resample to this spacing in mm (x y z) before writing.")
@click.option("--series-uid", default=None, help="Which series (default: the largest axial CT).")
@click.option("--on-gap", type=click.Choice(["error", "resample", "warn"]), default="error",
              show_default=True, help="Missing slices or uneven slice steps: refuse, or "
              "equalise onto an even grid (warn: the same, with a warning).")
@click.option("--step", "step_mm", type=click.FloatRange(0, min_open=True), default=None,
              metavar="MM", help="With --on-gap resample: the even grid's slice step (default: "
              "the finest step the series keeps for two or more steps; never below half the "
              "median step).")
@click.option("--interpolator", type=click.Choice(["linear", "nearest", "bspline"]),
              default="linear", show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "int16", "float32"]), default="auto",
              show_default=True, help="Voxel type written: auto is int16 when every value is "
              "a whole HU (exact), else float32; int16 rounds to whole HU.")
@click.option("--no-sidecar", is_flag=True, help="Do not write the JSON sidecar.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def convert(path: str, out: Path, spacing: tuple[float, float, float] | None,
            series_uid: str | None, on_gap: str, step_mm: float | None, interpolator: str,
            dtype: str, no_sidecar: bool, as_json: bool) -> None:
    """Convert a DICOM series (or .mhd/NIfTI) at PATH to OUT (.nii, .nii.gz, .mhd, .mha).

    A gantry-tilted series is resampled onto a straight grid, since these formats cannot
    store a sheared one. Beside the image, a BIDS-style JSON sidecar (as dcm2niix writes)
    holds the acquisition fields, the measured tilt, the slice equalisation applied and what
    the reader found.
    """
    from deepseek.medical.volume import read_volume

    opts = {"step_mm": step_mm} if step_mm is not None else {}
    vol = read_volume(path, series_uid=series_uid, on_gap=on_gap, tilt="resample", **opts)
    if spacing:
        vol = vol.resample(spacing, interpolator=interpolator)
    from deepseek.medical.volume import sidecar

    kind = vol.storage_dtype() if dtype == "auto" else dtype
    written = vol.save(out, dtype=kind)
    side = None
    if not no_sidecar:
        name = written.name
        for suffix in (".nii.gz", ".nii", ".mhd", ".mha"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        side = written.with_name(name + ".json")
        side.write_text(json.dumps(sidecar(vol, kind), indent=2) + "\n")
    _echo({"written": str(written), "sidecar": str(side) if side else None, "dtype": kind,
           "shape_zyx": list(vol.shape), "spacing_xyz": list(vol.spacing),
           "origin_xyz": list(vol.origin)}, as_json,
          f"wrote {written} ({kind}"
          + (f", sidecar {side.name}" if side else "") + f"): shape (z, y, x) {vol.shape}, "
          f"spacing (x, y, z) {tuple(round(s, 4) for s in vol.spacing)} mm")


@medical.command("generate")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=int, default=256, show_default=True, help="Rows = columns.")
@click.option("--slices", type=int, default=120, show_default=True)
@click.option("--pixel-spacing", type=float, default=None, help="mm (default 360 / size).")
@click.option("--slice-step", type=float, default=2.5, show_default=True, help="mm.")
@click.option("--nodules", type=int, default=6, show_default=True)
@click.option("--tilt", "tilt_deg", type=float, default=0.0, show_default=True,
              help="Gantry tilt in degrees: the same chest through tilted planes, its "
              "nodules inside the slab every image row covers.")
@click.option("--noise", type=float, default=15.0, show_default=True, help="HU (std).")
@click.option("--transfer-syntax", type=click.Choice(
    ["explicit", "implicit", "big-endian", "deflate", "rle", "jpeg-ls", "jpeg2000"]),
    default="explicit", show_default=True)
@click.option("--enhanced", is_flag=True, help="One Enhanced CT multi-frame file.")
@click.option("--shuffle", is_flag=True, help="Random file names and instance numbers.")
@click.option("--missing-slice", is_flag=True, help="Drop one slice in the middle.")
@click.option("--extra-series", is_flag=True, help="Add a 5 mm series in the same folder.")
@click.option("--localizer", is_flag=True, help="Add a coronal localizer in the same series.")
@click.option("--out-of-field", is_flag=True, help="-3024 HU outside a circular field of view.")
@click.option("--dicomdir", is_flag=True, help="Write a DICOM File-set with DICOMDIR.")
@click.option("--realistic", is_flag=True, help="Lungs closer to real CT: a vessel tree that "
              "fills them, bronchi, fissures, parenchymal texture, seen through a 0.5 mm "
              "scanner point spread (ChestPhantom(realistic=True)).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def generate(out_dir: Path, seed: int, size: int, slices: int, pixel_spacing: float | None,
             slice_step: float, nodules: int, tilt_deg: float, noise: float,
             transfer_syntax: str, enhanced: bool, shuffle: bool, missing_slice: bool,
             extra_series: bool, localizer: bool, out_of_field: bool, dicomdir: bool,
             realistic: bool, as_json: bool) -> None:
    """Write a synthetic chest CT phantom series to OUT_DIR, with its ground truth as a
    LUNA16 annotations.csv (the same generator as the synthetic: reader)."""
    from deepseek.medical.synthetic import write_phantom

    res = write_phantom(out_dir, seed=seed, size=size, slices=slices,
                        pixel_spacing=pixel_spacing, slice_step=slice_step, n_nodules=nodules,
                        tilt_deg=tilt_deg, noise=noise, transfer_syntax=transfer_syntax,
                        enhanced=enhanced, shuffle=shuffle, missing_slice=missing_slice,
                        extra_series=extra_series, localizer=localizer,
                        out_of_field=out_of_field, dicomdir=dicomdir, realistic=realistic)
    _echo({"out_dir": str(out_dir), "files": len(res.files), "series_uid": res.series_uid,
           "nodules": [n.__dict__ for n in res.nodules], "annotations": str(res.annotations)},
          as_json, f"wrote {len(res.files)} file(s) of series {res.series_uid} to {out_dir}\n"
                   f"{len(res.nodules)} nodules: {res.annotations}")


@medical.command("detect")
@click.argument("path")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write candidates as LUNA16 results CSV.")
@click.option("--monai-json", type=click.Path(path_type=Path), default=None,
              help="Also write the candidates as a MONAI detection datalist (world cccwhd "
              "boxes, under --monai-key).")
@click.option("--monai-key", default="validation", show_default=True,
              help="The datalist key of --monai-json (load_decathlon_datalist's "
              "data_list_key).")
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@click.option("--threshold", type=float, default=grid.THRESHOLD, show_default=True,
              help="Lowest probability reported.")
@click.option("--max-candidates", type=int, default=grid.MAX_CANDIDATES, show_default=True)
@click.option("--model", default="lung-nodule-attention", show_default=True,
              help="Registry name, weights file (safetensors + JSON) or .onnx export.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "torch"]), default="auto",
              show_default=True, help="auto: the packaged ONNX export on onnxruntime on the CPU "
              "(same candidates), PyTorch on CUDA, with --amp (the default on a CPU "
              "with AMX units) or for other weights.")
@click.option("--series-uid", default=None, help="Which DICOM series (default: largest CT).")
@click.option("--on-gap", type=click.Choice(["error", "resample", "warn"]), default="error",
              show_default=True, help="DICOM series with missing slices or uneven slice steps: "
              "refuse, or equalise onto an even grid.")
@click.option("--step", "step_mm", type=click.FloatRange(0, min_open=True), default=None,
              metavar="MM", help="With --on-gap resample: the even grid's slice step (default: "
              "the finest step the series keeps for two or more steps; never below half the "
              "median step).")
@click.option("--no-lung-mask", "no_lung_mask", is_flag=True,
              help="Search the whole inside of the body, not only the lungs (without it, a "
              "volume with no lung of plausible size is refused: not a chest CT).")
@click.option("--sizes", "sizes", type=click.IntRange(0), default=grid.SIZES, show_default=True,
              help="Measure this many of the most probable candidates on a segmentation "
              "(long axis, volume, extent), as readers measure; 0: the network's estimate "
              "only.")
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision: bf16 on the CPU, fp16 on CUDA. Default: on for the "
              "packaged detector on a CPU with bf16 matrix units (Intel AMX: 1.7x the "
              "network's speed, the same CPM within 0.005), off elsewhere.")
@click.option("--tta-top", type=int, default=grid.TTA_TOP, show_default=True,
              help="Re-score this many top candidates with flip test-time augmentation (0: off).")
@click.option("--tta-flips", default=grid.TTA_FLIPS, show_default=True, metavar="VIEWS",
              help="The flipped views of the test-time augmentation, comma-separated, each "
              "naming the axes it flips: 'zyx' (one view) or 'z,y,x' (three views, three "
              "times the time).")
@click.option("--window", type=int, default=grid.DETECT_WINDOW, show_default=True,
              help="Sliding-window edge in mm (a multiple of 4; 64 suits thin slabs).")
@click.option("--overlap", type=int, default=None,
              help="Overlap of neighbouring windows in mm [a quarter of the window, at most "
              "24].")
@click.option("--fpr", "fpr", default="none", show_default=True, metavar="none|auto|MODEL",
              help="Second stage: re-score every candidate with a false-positive reduction "
              "classifier (the probability becomes the geometric mean of both where that is "
              "lower: the stage only lowers). none: off; "
              "auto: the packaged nodule-fpr-3dcnn with the packaged detector; or a model "
              "name, weights or .onnx.")
def detect(path: str, out: Path | None, monai_json: Path | None, monai_key: str,
           as_json: bool,
           threshold: float,
           max_candidates: int, model: str, backend: str, series_uid: str | None, on_gap: str,
           step_mm: float | None, no_lung_mask: bool, sizes: int, amp: bool | None,
           tta_top: int,
           tta_flips: str, window: int, overlap: int | None, fpr: str | None) -> None:
    """Find lung nodules in PATH (DICOM folder/file, .mhd, NIfTI or a synthetic: URI)."""
    from deepseek.medical.metrics import write_monai_boxes, write_results
    from deepseek.medical.steps import detect_step
    from deepseek.paths import ready_to_write

    ready_to_write(out, "--out", "results.csv")  # before the detection, not after it
    ready_to_write(monai_json, "--monai-json", "boxes.json")
    # the same step `deepseek batch medical detect` runs per scan
    result = detect_step(model=model, backend=backend, threshold=threshold,
                         max_candidates=max_candidates, series_uid=series_uid, on_gap=on_gap,
                         step_mm=step_mm, lung_mask=not no_lung_mask, sizes=sizes, amp=amp,
                         tta_top=tta_top, tta_flips=tta_flips, window=window,
                         overlap=overlap, fpr=fpr, progress=None)(path)
    cands = result["candidates"]
    if out:
        write_results(cands, out)
    if monai_json:
        write_monai_boxes(cands, monai_json, images={c["seriesuid"]: str(path) for c in cands},
                          key=monai_key)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        for c in cands[:20]:
            size = (f"  long axis {c['diameter_mm']:.1f} mm, volume "
                    f"{1000 * c['volume_ml']:.0f} mm3" if c.get("size_source") ==
                    "segmentation" else f"  d={c['diameter_mm']:.1f} mm (network's estimate)")
            click.echo(f"p={c['probability']:.3f}  ({c['xyz'][0]:.1f}, {c['xyz'][1]:.1f}, "
                       f"{c['xyz'][2]:.1f}) mm{size}")
        net = result["network"]
        click.echo(f"{len(cands)} candidates in {result['timings_s']['total']:.1f} s "
                   f"({net['backend']}, {net['precision']})"
                   + (f"; written to {out}" if out else "")
                   + (f"; MONAI boxes in {monai_json}" if monai_json else ""))


@medical.command("evaluate")
@click.option("--pred", "pred_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="LUNA16 results CSV (seriesuid,coordX,coordY,coordZ,"
              "probability).")
@click.option("--ref", "ref_path", type=click.Path(exists=True, path_type=Path),
              required=True, help="LUNA16 annotations CSV (seriesuid,coordX,coordY,coordZ,"
              "diameter_mm).")
@click.option("--excluded", type=click.Path(exists=True, path_type=Path), default=None,
              help="annotations_excluded.csv: hits on these count as neither TP nor FP.")
@click.option("--series", "series_file", type=click.Path(exists=True, path_type=Path),
              default=None, help="seriesuids.csv: every evaluated seriesuid, one per line, "
              "the FP-rate divisor (default: those in the annotations and results, with a "
              "warning).")
@click.option("--bootstrap", type=click.IntRange(0), default=1000, show_default=True)
@click.option("--reading", type=click.Choice(["luna16", "exact"]), default="luna16",
              show_default=True, help="Sensitivities read on the official script's grid of "
              "FP rates, or at exactly 1/8 .. 8 FPs per scan.")
@click.option("--max-marks", type=click.IntRange(0), default=100, show_default=True,
              help="Candidates counted per scan, the most probable (0: all).")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="FROC curve PNG.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(pred_path: Path, ref_path: Path, excluded: Path | None, series_file: Path | None,
             bootstrap: int, reading: str, max_marks: int, plot: Path | None,
             as_json: bool) -> None:
    """Score a LUNA16 results CSV with the official FROC / CPM protocol (the registered
    metric luna16-froc, as `deepseek evaluate luna16-froc --pred --ref` computes it): hits
    within the radius (negative diameters as 10 mm), 100 marks per scan, the script's
    FP-rate grid. Pass --series (seriesuids.csv) so that scans without nodules or
    candidates count in the FP rate."""
    from deepseek.evaluation import evaluate_files
    from deepseek.medical.figures import plot_froc

    r = evaluate_files("luna16-froc", pred_path, ref_path, excluded=excluded,
                       scans=series_file, bootstrap=bootstrap, reading=reading,
                       max_marks=max_marks or None)
    if plot:
        plot_froc(r, plot)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    ci = f" (95% CI {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})" if r["ci95"] else ""
    click.echo(f"CPM {r['cpm']:.4f}{ci} over {r['n_scans']} scans, {r['n_nodules']} nodules")
    pr = r["protocol"]
    click.echo(f"  protocol: reading {pr['reading']}, at most {pr['max_marks_per_scan'] or 'all'}"
               f" marks per scan ({pr['marks_dropped']} dropped), "
               f"{pr['negative_diameters_as_10mm']} negative diameter(s) as 10 mm, scans "
               f"{pr['scans']}")
    for k, v in r["sensitivity_at_fps"].items():
        click.echo(f"  sensitivity at {k} FP/scan: {v:.4f}")


@medical.command("train")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--luna16", type=click.Path(exists=True, path_type=Path), default=None,
              help="LUNA16-layout folder (subset*/*.mhd + annotations.csv); default: "
              "phantom patches generated for the run.")
@click.option("--patches", type=int, default=2400, show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--accum-steps", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--val-scans", type=click.IntRange(0), default=None,
              help="Scans scored by CPM after each epoch: phantoms (default 2), or with "
                   "--fold the first N of the held-out subset (default all); 0: none.")
@click.option("--hard-negatives", type=click.IntRange(0), default=None,
              help="Patches around the model's own most confident false positives, mined "
                   "on 2 training scans after epoch 1 and trained on after [patches / 4 with "
                   "2+ epochs; 0: off].")
@click.option("--fold", type=click.IntRange(0), default=None,
              help="LUNA16: train on every subset but subsetK, validate on subsetK (best "
                   "epoch by its CPM), then score all its scans (OUT/results.csv).")
@click.option("--folds", "folds", default=None,
              help="LUNA16 cross-validation: 'all' (every subset in turn) or a list such as "
                   "0,1,2; one run per fold in OUT/foldK, the pooled FROC of all held-out "
                   "scans and the mean fold CPM in OUT/cross_validation.json.")
@click.option("--amp", is_flag=True, help="Mixed precision.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints.")
@click.option("--init", default=None,
              help="Start from these weights (registry name or .safetensors) to fine-tune.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--realistic", is_flag=True, help="Phantoms: train, validate and mine on "
              "realistic lungs (vessel tree, bronchi, fissures, texture).")
@click.option("--model", default="lung-nodule-attention", show_default=True,
              help="Any registered model whose input is a CT patch [N, 1, D, H, W] and whose "
                   "output is the heatmap/size/offset dict.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON (the "
              "default output is a short summary).")
def train(out: Path, luna16: Path | None, patches: int, epochs: int, batch_size: int,
          accum_steps: int, lr: float, val_scans: int | None, hard_negatives: int | None,
          fold: int | None,
          folds: str | None, amp: bool, resume: bool, init: str | None, seed: int,
          realistic: bool, model: str, as_json: bool) -> None:
    """Train a nodule detector through the core Trainer (checkpoints, resume, best kept)."""
    from deepseek.medical.errors import MedicalError
    from deepseek.medical.nodule_training import cross_validate, train_detector

    opts = dict(n_patches=patches, epochs=epochs, batch_size=batch_size,
                accum_steps=accum_steps, lr=lr, val_scans=val_scans,
                hard_negatives=hard_negatives, amp=amp, resume=resume,
                init=init, seed=seed, model=model)
    if realistic:
        if luna16 is not None:
            raise click.UsageError("--realistic is for phantoms; LUNA16 scans are real")
        opts["realistic"] = True
    if folds is not None:
        if fold is not None or luna16 is None:
            raise MedicalError("--folds needs --luna16 and no --fold")
        chosen = None
        if folds != "all":
            try:
                chosen = [int(k) for k in folds.split(",")]
            except ValueError:
                raise click.BadParameter(f"{folds!r}: give 'all' or subsets such as 0,1,2",
                                         param_hint="--folds") from None
        cv = cross_validate(out, luna16, chosen, **opts)
        if as_json:
            click.echo(json.dumps(cv, indent=2, default=str))
            return
        for f in cv["folds"]:
            click.echo(f"fold {f['fold']}: CPM {f['cpm']:.3f} ({f['model']})")
        p = cv["pooled"]
        click.echo(f"pooled over {p['n_scans']} held-out scans, {p['n_nodules']} nodules: "
                   f"CPM {p['cpm']:.3f} (official protocol); mean fold CPM "
                   f"{cv['mean_fold_cpm']:.3f}")
        return
    res = train_detector(out, luna16=luna16, fold=fold, **opts)
    from deepseek.report import echo_training

    echo_training(res, as_json)
    if "fold" in res and not as_json:
        f = res["fold"]
        click.echo(f"fold {f['fold']}: CPM {f['val_cpm']:.3f} on {len(f['scans'])} held-out "
                   f"scans; results in {f['results']}")


@medical.command("train-fpr")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--scans", type=click.IntRange(1), default=24, show_default=True,
              help="Phantom scans whose candidates are the training set.")
@click.option("--val-scans", type=click.IntRange(0), default=6, show_default=True,
              help="Phantom scans the CPM with and without the stage is measured on "
              "after every epoch (the best epoch is kept).")
@click.option("--epochs", type=click.IntRange(1), default=12, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--detector", default="lung-nodule-attention", show_default=True,
              help="The first stage whose candidates are classified (name or weights).")
@click.option("--smooth", is_flag=True,
              help="Smooth phantoms instead of realistic ones (vessel tree, bronchi, fissures).")
@click.option("--vessel-negatives", type=click.IntRange(0), default=None,
              help="Places on each training phantom's thick vessels (branchings and "
              "cross-sections) taught as not-a-nodule besides the detector's candidates; "
              "0: none.  [default: 32]")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def train_fpr_cmd(out: Path, scans: int, val_scans: int, epochs: int, batch_size: int,
                  lr: float, seed: int, detector: str, smooth: bool,
                  vessel_negatives: int | None, as_json: bool) -> None:
    """Train the false-positive reduction stage (nodule-fpr-3dcnn) on the detector's own
    candidates on phantom scans; use it with `detect --fpr OUT/model.safetensors`."""
    from deepseek.medical.fpr_training import VESSEL_NEGATIVES, train_fpr
    from deepseek.report import echo_training

    res = train_fpr(out, scans=scans, val_scans=val_scans, epochs=epochs,
                    batch_size=batch_size, lr=lr, seed=seed, detector=detector,
                    realistic=not smooth,
                    vessel_negatives=VESSEL_NEGATIVES if vessel_negatives is None
                    else vessel_negatives)
    echo_training(res, as_json)
