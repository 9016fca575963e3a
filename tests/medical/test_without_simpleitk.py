"""Without SimpleITK (the edge install), as in a fresh interpreter that cannot import it:
DICOM series read, resample and get their lung mask; what needs SimpleITK (volume files,
B-spline resampling) says which install brings it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_dicom_and_the_grid_without_simpleitk(plain, tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"\0" * 32)
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["SimpleITK"] = None
        from deepseek.medical.detector import find_lungs
        from deepseek.medical.dicom import DICOMReader
        from deepseek.medical.errors import MedicalError
        from deepseek.medical.volume import Volume
        vol = DICOMReader({str(plain.out_dir)!r}, progress=False).load()
        iso = vol.resample([1.0, 1.0, 1.0])
        mask, info = find_lungs(iso, dilate_mm=4.0)
        errors = []
        for call in (lambda: Volume.load({str(tmp_path / "ct.nii.gz")!r}),
                     lambda: vol.resample([2.0, 2.0, 2.0], interpolator="bspline")):
            try:
                call()
            except MedicalError as exc:
                errors.append(str(exc))
        print(json.dumps({{"shape": list(iso.shape), "mask": int(mask.sum()),
                          "found": info["found"], "errors": errors}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert min(res["shape"]) > 0 and res["mask"] > 0
    assert len(res["errors"]) == 2
    assert all('pip install "deepseek-medical[itk]"' in e for e in res["errors"])
    assert "ct.nii.gz" in res["errors"][0] and "bspline" in res["errors"][1]
