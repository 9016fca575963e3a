"""Credit risk from a tabular CSV: reading (kinds, missing values, E-notation, bad files),
the stratified split, the encoder, the scores against scikit-learn/SciPy, and the
`deepseek finance risk` commands end to end on a small synthetic table."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from deepseek.finance import risk

# found, not imported: scikit-learn takes a second to import, paid only where these run
pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                reason="scikit-learn is not installed (the finance extra)")


def _write(path, text):
    path.write_text(text)
    return path


def test_columns_by_kind_with_missing_values_and_e_notation(tmp_path):
    f = _write(tmp_path / "c.csv",
               "ID,LIMIT,grade,region code,AGE,paid,bad\n"
               '1,5E+05,A,10,30,"1,234",no\n'
               "2,20000,B,20,NA,0,yes\n"
               "3,1.5e4,,10,41,12,no\n"
               "4,30000,C,30,?,7,no\n"
               "5,70000,A,20,52,3,yes\n"
               "6,80000,B,10,33,9,no\n")
    t = risk.read_table(f, "bad", categorical=("region code",))
    assert t.positive == "yes" and t.y.tolist() == [0, 1, 0, 0, 1, 0]
    assert t.numeric["LIMIT"].tolist() == [500000.0, 20000.0, 15000.0, 30000.0, 70000.0,
                                           80000.0]
    assert t.numeric["paid"][0] == 1234.0
    assert np.isnan(t.numeric["AGE"]).sum() == 2
    assert t.categorical["grade"].tolist() == ["A", "B", "", "C", "A", "B"]
    assert t.categorical["region code"].tolist() == ["10", "20", "10", "30", "20", "10"]
    assert "ID" in t.dropped and "ID" not in t.numeric  # said, not silent


def test_semicolon_files_and_the_label_guess(tmp_path):
    f = _write(tmp_path / "s.csv", "x;y;Default\n1;2;0\n3;4;1\n5;6;0\n")
    assert risk.guess_label(f) == "Default"
    t = risk.read_table(f, "Default")
    assert sorted(t.numeric) == ["x", "y"] and t.y.tolist() == [0, 1, 0]
    f = _write(tmp_path / "n.csv", "a,b,outcome\n1,2,0\n")
    with pytest.raises(risk.RiskDataError, match=r"n\.csv: which column is the label"):
        risk.guess_label(f)


@pytest.mark.parametrize("text, kwargs, pattern", [
    ("a,b\n1,0\n", {"label": "y"}, r"no label column 'y'; columns: a, b"),
    ("a,y\n1,0\n2,\n3,1\n", {"label": "y"}, r"label 'y' is missing on line\(s\) \[3\]"),
    ("a,y\n1,0\n2,1\n3,2\n", {"label": "y"}, r"must take two values, it takes 3"),
    ("a,y\n1,0\n2,1,5\n", {"label": "y"}, r"line 3: 3 fields, the header has 2"),
    ("a,y\n1,0\n2,1\n", {"label": "y", "positive": "bad"}, r"positive label 'bad' not among"),
    ("a,y\n1,0\n1,1\n", {"label": "y"}, r"no feature columns left"),
    ("", {"label": "y"}, r"empty file"),
    ("a,y\n", {"label": "y"}, r"a header and no rows"),
    ("a,y\n1,0\n2,1\n", {"label": "y", "categorical": ("b",)}, r"no column 'b'"),
])
def test_bad_tables_name_the_file_and_the_fix(tmp_path, text, kwargs, pattern):
    f = _write(tmp_path / "bad.csv", text)
    label = kwargs.pop("label")
    with pytest.raises(risk.RiskDataError, match=pattern) as err:
        risk.read_table(f, label, **kwargs)
    assert "bad.csv" in str(err.value)


def _table(tmp_path, n=600, seed=0):
    path = risk.synthetic_credit(tmp_path / f"credit{seed}.csv", n=n, seed=seed)
    return path, risk.read_table(path, "DEFAULT", categorical=risk.SYNTHETIC_CATEGORICAL)


def test_the_split_is_stratified_disjoint_and_fixed(tmp_path):
    path, _ = _table(tmp_path)
    t = risk.read_table(path, "DEFAULT", keep=("ID",))  # the row ids, to follow the rows
    parts = risk.split(t)
    assert [len(p) for p in parts] == [360, 120, 120]
    rate = t.y.mean()
    assert all(abs(p.y.mean() - rate) < 0.02 for p in parts)
    ids = [set(p.numeric["ID"].tolist()) for p in parts]
    assert set.union(*ids) == set(range(1, 601)) and sum(map(len, ids)) == 600
    again = risk.split(t)
    assert [set(p.numeric["ID"].tolist()) for p in again] == ids
    tiny = t.subset(np.r_[np.flatnonzero(t.y == 1)[:3], np.flatnonzero(t.y == 0)[:50]])
    with pytest.raises(risk.RiskDataError, match="fewer than 5 rows of one class"):
        risk.split(tiny)


def test_the_encoder_imputes_flags_and_keeps_unknown_categories_apart(tmp_path):
    f = _write(tmp_path / "e.csv", "amt,kind,y\n1,a,0\n,b,1\n3,a,0\n5,b,1\n")
    enc = risk.Encoder().fit(risk.read_table(f, "y"))
    g = _write(tmp_path / "g.csv", "amt,kind,y\n,c,0\n3,a,1\n")
    x = enc.transform(risk.read_table(g, "y", keep=("amt", "kind")))
    # amt (standardised, the median 3 imputed), its missing flag, kind a/b/unknown
    assert x.shape == (2, 5)
    assert x[0, 1] == 1 and x[1, 1] == 0
    assert x[0, 0] == x[1, 0]  # the missing value got the training median, 3
    assert x[0].tolist()[2:] == [0, 0, 1] and x[1].tolist()[2:] == [1, 0, 0]
    h = _write(tmp_path / "h.csv", "kind,y\na,0\nb,1\na,1\n")
    with pytest.raises(risk.RiskDataError, match=r"h\.csv: the model needs numeric column"):
        enc.check(risk.read_table(h, "y"))


def test_scores_agree_with_scikit_learn_and_scipy():
    from scipy.stats import ks_2samp
    from sklearn.metrics import brier_score_loss, roc_auc_score

    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.25).astype(int)
    p = np.clip(0.25 + 0.3 * (y - 0.25) + rng.normal(0, 0.2, 500), 0, 1)
    sc = risk.scores(y, p, bootstrap=200)
    assert sc["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-5)
    assert sc["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-5)
    assert sc["ks"] == pytest.approx(ks_2samp(p[y == 1], p[y == 0]).statistic, abs=1e-5)
    for m in ("auc", "ks", "brier"):
        lo, hi = sc[m + "_ci95"]
        assert lo <= sc[m] <= hi and hi - lo > 0
    assert risk.scores(y, p, bootstrap=0)["auc_ci95"] is None


@pytest.fixture
def invoke():
    from click.testing import CliRunner

    from deepseek.cli import build_cli

    runner = CliRunner()
    return lambda *args: runner.invoke(build_cli(), [str(a) for a in args])


@pytest.mark.slow
def test_train_then_evaluate_on_new_clients(tmp_path, invoke):
    path, _ = _table(tmp_path, n=800)
    res = invoke("finance", "risk", "train", path, "--categorical", "SEX,EDUCATION,MARRIAGE",
                 "--epochs", 3, "--bootstrap", 30, "--out", tmp_path / "m", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert set(rep["test"]) == {"MLP, defaults", "logistic regression", "gradient boosting"}
    assert rep["data"]["label"] == "DEFAULT" and "ID" in rep["data"]["dropped"]
    assert all(0.5 < s["auc"] <= 1 for s in rep["test"].values())
    assert any("logistic regression" in n for n in rep["notes"])
    model = tmp_path / "m" / "model.safetensors"
    assert model.is_file() and (tmp_path / "m" / "roc.png").is_file()
    # new clients: a later file in which every client is male (SEX constant) still scores
    new = risk.synthetic_credit(tmp_path / "new.csv", n=300, seed=9)
    lines = new.read_text().splitlines()
    sex = lines[0].split(",").index("SEX")
    fixed = [lines[0]] + [",".join(v if i != sex else "1" for i, v in enumerate(r.split(",")))
                          for r in lines[1:]]
    new.write_text("\n".join(fixed) + "\n")
    res = invoke("finance", "risk", "evaluate", new, "--model", model, "--bootstrap", 20,
                 "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["data"]["rows"] == 300 and 0.5 < out["scores"]["auc"] <= 1
    # a file without a column the model needs: named, no traceback
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join(",".join(r.split(",")[:1] + r.split(",")[2:]) for r in fixed))
    res = invoke("finance", "risk", "evaluate", cut, "--model", model)
    assert res.exit_code != 0 and "LIMIT_BAL" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_tune_scores_defaults_tuned_and_baselines(tmp_path, invoke):
    path, _ = _table(tmp_path, n=600)
    res = invoke("finance", "risk", "tune", path, "--trials", 3, "--epochs", 2,
                 "--bootstrap", 0)
    assert res.exit_code == 0, res.output
    for name in ("MLP, defaults", "MLP, tuned", "logistic regression", "gradient boosting"):
        assert name in res.output
    assert "(no bootstrap)" in res.output and "tuning " in res.output


def test_bad_parameters_are_refused(tmp_path, invoke, monkeypatch):
    path, _ = _table(tmp_path, n=200)
    # an --out under a file is refused before the training or the trials
    def never(*args, **kwargs):
        raise AssertionError("trained before the output was checked")

    monkeypatch.setattr(risk, "run", never)
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder would go")
    for verb in ("train", "tune"):
        res = invoke("finance", "risk", verb, path, "--out", blocker / verb)
        assert res.exit_code == 2, res.output
        assert res.output.startswith(f"error: {blocker / verb}: Not a directory")
    monkeypatch.undo()
    for given, pattern in (("{\"lr\": 0.1, \"depthh\": 2}", "unknown parameter"),
                           ("lr=0.1", "not JSON"), ("[1]", "a JSON object")):
        res = invoke("finance", "risk", "train", path, "--params", given)
        assert res.exit_code == 2 and pattern in res.output, res.output
