"""deepseek.open: every plugin's sources reach their reader by scheme, suffix or probe;
ambiguity and no match are errors that list the candidates."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner

import deepseek
from deepseek import hookimpl
from deepseek.cli import build_cli
from deepseek.plugins import temporary_plugin
from deepseek.readers import ReaderError, candidates, describe, resolve, uri_options


def _name(source, kind=None):
    return resolve(source, kind).name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One small file of each format the plugins read."""
    import cv2

    from deepseek.finance.synthetic import synthetic_ticks
    from deepseek.finance.ticks import write_csv
    from deepseek.medical.synthetic import write_phantom
    from deepseek.medical.volume import Volume

    root = tmp_path_factory.mktemp("sources")
    out = {}
    ph = write_phantom(root / "dicom", size=32, slices=4, n_nodules=1, shuffle=True)
    out["dicom_dir"] = ph.out_dir
    out["dicom_file"] = ph.files[0]
    vol = Volume(np.zeros((4, 8, 8), np.float32), (1.0, 1.0, 2.0))
    out["nifti"] = vol.save(root / "ct.nii.gz")
    out["mhd"] = vol.save(root / "ct.mhd")
    images = root / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"part{i}.png"), np.full((16, 24), 40 * i, np.uint8))
    out["images"] = images
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30.0,
                             (32, 24), isColor=False)
    for i in range(3):
        writer.write(np.full((24, 32), 50 * i, np.uint8))
    writer.release()
    out["video"] = root / "clip.avi"
    out["csv"] = write_csv(synthetic_ticks(50, seed=1), root / "ticks.csv")
    books = [{"u": i, "s": "ETHUSDT", "b": f"{100 + i / 100}", "B": "2", "a": "100.1",
              "A": "3"} for i in range(3)]  # three different tops: three ticks
    lines = [f"{1_700_000_000_000_000_000 + i} {json.dumps(b)}\n" for i, b in enumerate(books)]
    out["capture"] = root / "capture-2024"  # no suffix: only the probe finds it
    with gzip.open(out["capture"], "wt") as f:
        f.writelines(lines)
    out["capture_gz"] = root / "capture.gz"
    out["capture_gz"].write_bytes(out["capture"].read_bytes())
    return out


def test_every_plugin_source_reaches_its_reader(files):
    assert _name(files["dicom_dir"]) == "dicom"  # probe: a folder of DICOM files
    assert _name(files["dicom_file"]) == "dicom"
    assert _name(files["nifti"]) == "nifti"  # .nii.gz beats the tick capture's .gz
    assert _name(files["mhd"]) == "mhd"
    assert _name(files["images"]) == "image-folder"  # probe
    assert _name(files["video"]) == "video"
    assert _name(files["csv"]) == "ticks-csv"
    assert _name(files["capture"]) == "binance"  # probe on the first line, gzip inside
    assert _name(files["capture_gz"]) == "binance"
    assert _name("binance:" + str(files["capture"])) == "binance"
    assert _name("cam:0") == "camera" and _name("/dev/video3") == "camera"
    assert _name("rtsp://10.0.0.5/line1") == "stream"
    assert _name("videotestsrc ! videoconvert ! appsink") == "gstreamer"
    assert _name("synthetic:?seed=3", "volume") == "ct-phantom"
    assert _name("synthetic:?seed=3", "frames") == "synthetic-line"
    assert _name("synthetic:?n=100", "ticks") == "synthetic-ticks"
    assert candidates(files["video"])[0] == "suffix"
    assert candidates(files["images"])[0] == "probe"


def test_open_returns_each_plugins_objects(files):
    vol = deepseek.open(files["nifti"])
    assert vol.shape == (4, 8, 8) and vol.spacing == pytest.approx((1.0, 1.0, 2.0))
    ticks = deepseek.open(files["capture"])
    assert len(ticks) == 3 and ticks["bid"][0] == 100.0
    ticks = deepseek.open("synthetic:?n=200&seed=4", kind="ticks")
    assert len(ticks) == 200
    with deepseek.open(files["images"]) as src:
        assert [int(f.image[0, 0]) for f in src] == [0, 40]
    with deepseek.open("synthetic:?seed=2&frames=3&width=64&height=48", kind="frames") as src:
        assert [f.image.shape for f in src] == [(48, 64)] * 3


def test_ambiguity_and_no_match_list_the_candidates(tmp_path):
    with pytest.raises(ReaderError, match="ambiguous: 3 readers accept it by scheme: "
                       "ct-phantom.*synthetic-line.*synthetic-ticks.*kind="):
        deepseek.open("synthetic:")
    odd = tmp_path / "notes.xyz"
    odd.write_text("hello")
    with pytest.raises(ReaderError, match=r"no reader accepts .*notes.xyz.*Readers: .*dicom "
                       r"\[volume; \.dcm, probe\] \(medical\)"):
        deepseek.open(odd)
    with pytest.raises(ReaderError, match="missing.bin does not exist"):
        deepseek.open(tmp_path / "missing.bin")
    with pytest.raises(ReaderError, match="no reader of kind 'audio'"):
        deepseek.open(odd, kind="audio")
    with pytest.raises(ReaderError, match="yields 'ticks', not 'volume'"):
        deepseek.open(odd, kind="volume", reader="ticks-csv")


def test_reader_option_and_probe_failures(files):
    calls = []

    def broken_probe(source):
        raise RuntimeError("probe bug")

    class P:
        @staticmethod
        @hookimpl
        def register_readers(register):
            register("test-text", lambda s, **o: calls.append(o) or "text", kind="text",
                     accepts=broken_probe)

    with temporary_plugin(P, name="reader-test"):
        # a probe that raises is skipped, never fatal; reader= still picks it by name
        assert _name(files["csv"]) == "ticks-csv"
        assert deepseek.open(files["csv"], reader="test-text", lines=3) == "text"
        assert calls == [{"lines": 3}]


def test_uri_options_and_describe():
    assert uri_options("synthetic:?seed=3&width=1.5&name=x&ok=true&size=64,48", "synthetic:") \
        == {"seed": 3, "width": 1.5, "name": "x", "ok": True, "size": (64, 48)}
    assert uri_options("synthetic:", "synthetic:") == {}
    with pytest.raises(ReaderError, match="key=value"):
        uri_options("synthetic:?seed", "synthetic:")
    arr = np.zeros(3, dtype=[("a", "f8"), ("b", "i4")])
    assert describe(arr) == {"type": "ndarray", "shape": [3], "dtype": str(arr.dtype),
                             "fields": ["a", "b"], "records": 3}


def test_read_and_readers_commands(files):
    runner = CliRunner()
    res = runner.invoke(build_cli(), ["readers", "--json"])
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["nifti"]["suffixes"] == [".nii", ".nii.gz"] and rows["dicom"]["probe"]
    assert {r["kind"] for r in rows.values()} >= {"volume", "frames", "ticks"}
    res = runner.invoke(build_cli(), ["read", str(files["mhd"]), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["reader"] == "mhd" and info["shape_zyx"] == [4, 8, 8]
    res = runner.invoke(build_cli(), ["read", "synthetic:", "--kind", "ticks", "-o", "n=64"])
    assert res.exit_code == 0 and "records: 64" in res.output
    res = runner.invoke(build_cli(), ["read", "synthetic:"])
    assert res.exit_code == 2 and "ambiguous" in res.output and "Traceback" not in res.output


class SensorPlugin:
    """A plugin author's sensor CSV reader (``.csv``, recognised by its header)."""

    @staticmethod
    def is_sensor_csv(source):
        from deepseek.readers import head

        return head(source).split(b"\n", 1)[0].strip() == b"sensor,value"

    @staticmethod
    @hookimpl
    def register_readers(register):
        def read_sensor(source):
            rows = np.loadtxt(source, delimiter=",", skiprows=1, ndmin=2)
            return rows[:, 1] if rows.size else rows

        register("sensor-csv", read_sensor, kind="sensor", suffixes=[".csv"],
                 accepts=SensorPlugin.is_sensor_csv)


@pytest.mark.filterwarnings("ignore:loadtxt. input contained no data")
def test_a_generic_suffix_goes_by_content(files, tmp_path):
    readings = tmp_path / "readings.csv"
    readings.write_text("sensor,value\n1,0.5\n2,0.75\n")
    bars = tmp_path / "daily.csv"
    bars.write_text("Date,Open,High,Low,Close,Volume\n2006-01-02,1,2,0.5,1.5,100\n")
    with temporary_plugin(SensorPlugin, name="sensors"):
        assert candidates(readings) == ("suffix+content", [resolve(readings)])
        assert _name(readings) == "sensor-csv"
        assert deepseek.open(readings).tolist() == [0.5, 0.75]
        assert _name(files["csv"]) == "ticks-csv"  # the tick CSV's own header
        # every .csv reader declines a bar file; the bar reader's probe finds it
        assert _name(bars) == "bars-csv"
        header_only = tmp_path / "header-only.csv"
        header_only.write_text("sensor,value\n")
        with pytest.raises(ReaderError, match=r"reader sensor-csv \(sensors\): .*holds no "
                           "data"):
            deepseek.open(header_only)  # an error, not an empty array
        odd = tmp_path / "odd.csv"
        odd.write_text("a,b\n1,2\n")
        with pytest.raises(ReaderError, match=r"no reader accepts .*odd.csv.*looked at its "
                           r"content and declined it: .*sensor-csv.*ticks-csv.*--reader"):
            deepseek.open(odd)


def test_two_readers_accepting_one_file_is_ambiguous(tmp_path):
    class Twin(SensorPlugin):
        @staticmethod
        @hookimpl
        def register_readers(register):
            register("sensor-csv-v2", lambda s: np.ones(1), kind="sensor", suffixes=[".csv"],
                     accepts=SensorPlugin.is_sensor_csv)

    readings = tmp_path / "readings.csv"
    readings.write_text("sensor,value\n1,0.5\n")
    with temporary_plugin(SensorPlugin, name="sensors"), temporary_plugin(Twin, name="twin"):
        with pytest.raises(ReaderError, match=r"ambiguous: 2 readers accept it by "
                           r"suffix\+content: sensor-csv.*sensor-csv-v2.*reader=NAME"):
            deepseek.open(readings)
        assert deepseek.open(readings, reader="sensor-csv-v2").tolist() == [1.0]


def test_reader_errors_name_the_reader(files, tmp_path):
    from deepseek.errors import PluginError

    class Buggy:
        @staticmethod
        @hookimpl
        def register_readers(register):
            register("buggy", lambda s: {}["boom"], kind="x", suffixes=[".bug"])

    bad = tmp_path / "ticks.csv"
    bad.write_text("time_ns,bid,ask,bid_size,ask_size\n1,100,99,1,1\n")  # bid above ask
    with pytest.raises(deepseek.DeepSeekError, match=r"^reader ticks-csv \(finance\): .*"
                       r"ticks.csv, line 2"):
        deepseek.open(bad)
    (tmp_path / "x.bug").write_text("x")
    with temporary_plugin(Buggy, name="buggy-plugin"):
        with pytest.raises(PluginError, match=r"reader buggy \(buggy-plugin\) failed on .*"
                           r"KeyError: 'boom' \(a bug in plugin buggy-plugin"):
            deepseek.open(tmp_path / "x.bug")
        res = CliRunner().invoke(build_cli(), ["read", str(tmp_path / "x.bug")])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "reader buggy (buggy-plugin) failed" in res.output
