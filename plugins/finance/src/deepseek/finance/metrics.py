"""Metrics of the finance plugin (registered): classification quality of tick models, and the
performance of a backtest.

``tick-classification`` scores predictions of the mid-price move (class 0 down, 1 flat,
2 up) against labels: accuracy, macro F1, the directional hit rate (of the up/down calls,
the share whose label is that direction) and the share of ticks called, and the
majority-class baseline on the same labels, so a model's figure always stands next to the
figure of the simplest rule. :func:`skill` gives the same without the baseline. Given
class scores, it adds the one-vs-rest ROC AUC of each class and their mean.

``trading`` scores an equity curve and its fills (:func:`trading`): equity-based returns
over fixed periods, total and (where the span supports it) annualised return, Sharpe and
Sortino ratios per period and annualised, maximum drawdown as a fraction of the peak and
its duration, round-trip hit rate, turnover and fees; the definitions are in its docstring.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepseek.finance.errors import FinanceError

N_CLASSES = 3


def _classes(predictions: Any, n: int) -> np.ndarray:
    p = np.asarray(predictions)
    if p.ndim == 2:
        if p.shape[1] != N_CLASSES:
            raise FinanceError(f"predictions have {p.shape[1]} columns; expected {N_CLASSES} "
                               "class scores (down, flat, up) or one class index per row")
        return p.argmax(-1)
    if p.ndim != 1:
        raise FinanceError(f"predictions of shape {p.shape}: give (N, 3) scores or (N,) classes")
    if not np.all(np.isin(p, np.arange(N_CLASSES))):
        raise FinanceError("class indices must be 0 (down), 1 (flat) or 2 (up)")
    return p.astype(np.int64)


def macro_f1_counts(pred: np.ndarray, y: np.ndarray) -> float:
    """Macro F1 of class indices (no checks: for inner loops over valid arrays)."""
    cm = np.bincount(y * N_CLASSES + pred, minlength=N_CLASSES * N_CLASSES).reshape(
        N_CLASSES, N_CLASSES)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(tp > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def skill(predictions: Any, references: Any) -> dict[str, float]:
    """Accuracy, macro F1, directional hit rate and calls. ``predictions``: (N, 3) class
    scores (logits) or (N,) class indices; ``references``: (N,) labels 0/1/2. The hit rate
    is NaN when nothing is called up or down."""
    y = np.asarray(references)
    if y.ndim != 1:
        raise FinanceError(f"labels must be one class per row, got shape {y.shape}")
    if not np.all(np.isin(y, np.arange(N_CLASSES))):
        raise FinanceError("labels must be 0 (down), 1 (flat) or 2 (up)")
    y = y.astype(np.int64)
    pred = _classes(predictions, len(y))
    if len(pred) != len(y):
        raise FinanceError(f"{len(pred)} predictions for {len(y)} labels")
    if len(y) == 0:
        raise FinanceError("no labels to score")
    acc = float((pred == y).mean())
    f1s = []
    for c in range(N_CLASSES):
        tp = float(((pred == c) & (y == c)).sum())
        fp = float(((pred == c) & (y != c)).sum())
        fn = float(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    called = pred != 1
    n_called = int(called.sum())
    hit = float((pred[called] == y[called]).mean()) if n_called else float("nan")
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)), "hit_rate": hit,
            "calls": n_called / len(y)}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``: the probability
    that a random positive scores above a random negative, ties counting half (the
    Mann-Whitney statistic from average ranks). NaN when one class is absent."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # average rank (1-based) of each group of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auc_ovr(scores: Any, references: Any) -> dict[str, float]:
    """One-vs-rest ROC AUC of each class (down, flat, up) from (N, 3) class scores, and their
    mean over the classes present (``auc_ovr``)."""
    p = np.asarray(scores, dtype=np.float64)
    y = np.asarray(references).astype(np.int64)
    if p.ndim != 2 or p.shape != (len(y), N_CLASSES):
        raise FinanceError(f"AUC needs (N, {N_CLASSES}) class scores for {len(y)} labels, got "
                           f"shape {p.shape}")
    out = {f"auc_{name}": roc_auc(p[:, c], y == c)
           for c, name in enumerate(("down", "flat", "up"))}
    present = [v for v in out.values() if v == v]
    out["auc_ovr"] = float(np.mean(present)) if present else float("nan")
    return out


def classification(predictions: Any, references: Any) -> dict[str, float]:
    """:func:`skill` plus the majority-class baseline of the same labels."""
    out = skill(predictions, references)
    y = np.asarray(references).astype(np.int64)
    counts = np.bincount(y, minlength=N_CLASSES)
    share = counts.max() / len(y)
    out["majority_baseline"] = float(share)
    # always predicting the majority class: F1 of that class, 0 for the others
    out["majority_baseline_macro_f1"] = float(2 * share / (1 + share) / N_CLASSES)
    if np.asarray(predictions).ndim == 2:
        out.update(auc_ovr(predictions, y))
    return out


YEAR_S = 365.25 * 86400.0


def _fills_table(fills: Any) -> dict[str, np.ndarray]:
    if fills is None:
        return {k: np.zeros(0) for k in ("time_ns", "side", "price", "qty", "fee")}
    f = np.asarray(fills)
    if f.dtype.names:
        missing = {"time_ns", "side", "price", "qty", "fee"} - set(f.dtype.names)
        if missing:
            raise FinanceError(f"fills lack field(s) {sorted(missing)}")
        return {k: np.asarray(f[k], dtype=np.float64) for k in
                ("time_ns", "side", "price", "qty", "fee")}
    if f.size == 0:
        return _fills_table(None)
    if f.ndim == 1:
        f = f[None, :]
    if f.ndim != 2 or f.shape[1] < 5:
        raise FinanceError(f"fills of shape {f.shape}: give rows of time_ns, side, price, qty, "
                           "fee (the fills.csv a backtest writes)")
    return {k: f[:, i].astype(np.float64) for i, k in
            enumerate(("time_ns", "side", "price", "qty", "fee"))}


def round_trips(fills: Any) -> np.ndarray:
    """Net P&L (after fees) of each completed round trip, flat to flat; a fill that flips the
    position closes one trip and opens the next (its fee split by quantity)."""
    f = _fills_table(fills)
    out: list[float] = []
    pos = 0.0
    pnl = 0.0
    for side, px, qty, fee in zip(f["side"], f["price"], f["qty"], f["fee"]):
        signed = side * qty
        if pos != 0.0 and np.sign(signed) != np.sign(pos) and abs(signed) >= abs(pos) - 1e-12:
            closing = abs(pos)
            part = closing / qty if qty else 1.0
            pnl += -np.sign(signed) * closing * px - fee * part
            out.append(pnl)
            rest = qty - closing
            pos = np.sign(signed) * rest if rest > 1e-12 else 0.0
            pnl = -np.sign(signed) * rest * px - fee * (1.0 - part) if rest > 1e-12 else 0.0
        else:
            pos += signed
            pnl += -signed * px - fee
    return np.asarray(out, dtype=np.float64)


def load_trading_files(pred_path: Any, ref_path: Any) -> tuple[dict[str, Any], np.ndarray]:
    """``equity.csv`` (time_ns, equity[, position], a header row) with its times read as
    exact integers, and ``fills.csv`` (time_ns, side, price, qty, fee[, ...])."""
    import csv

    def rows(path: Any) -> tuple[list[str], list[list[str]]]:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM or not
            data = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
        if data and data[0] and not data[0][0].strip().lstrip("-").isdigit():
            return [c.strip() for c in data[0]], data[1:]
        return [], data

    header, eq_rows = rows(pred_path)
    if len(eq_rows) < 2:
        raise FinanceError(f"{pred_path}: {len(eq_rows)} data row(s); an equity curve needs at "
                           "least 2 rows of time_ns, equity[, position]")
    width = len(eq_rows[0])
    t, cols = [], []
    for i, r in enumerate(eq_rows, 2 if header else 1):  # file line numbers
        if len(r) != width or width < 2:
            raise FinanceError(f"{pred_path}: line {i} has {len(r)} columns, the first data "
                               f"line {width} (time_ns, equity[, position])")
        try:
            t.append(int(r[0]))
            cols.append([float(c) for c in r[1:3]])
        except ValueError:
            raise FinanceError(f"{pred_path}: line {i}: time_ns must be an integer number of "
                               f"nanoseconds and equity a number, got {r[:3]}") from None
    c = np.asarray(cols, dtype=np.float64)
    equity = {"time_ns": np.asarray(t, dtype=np.int64), "equity": c[:, 0],
              "position": c[:, 1] if c.shape[1] > 1 else None}
    _, fill_rows = rows(ref_path)
    try:
        fills = np.asarray([[float(x) for x in r[:5]] for r in fill_rows],
                           dtype=np.float64).reshape(-1, 5)
    except ValueError as exc:
        raise FinanceError(f"{ref_path}: not a fills table of time_ns, side, price, qty, fee "
                           f"({exc})") from None
    return equity, fills


MIN_ANNUAL_DAYS = 30.0   # an annual figure needs at least this span ...
MIN_ANNUAL_RETURNS = 30  # ... and this many returns


def trading(predictions: Any, references: Any = None, *, capital: float | None = None,
            period_s: float | str | None = "auto") -> dict[str, Any]:
    """Performance of a backtest, from its equity curve.

    ``predictions``: the equity curve, (N, 2+) rows of ``time_ns, equity[, position]`` (the
    ``equity.csv`` a backtest writes). ``capital``: the equity before the first row (default
    the first equity value). ``references``: its fills, rows of ``time_ns, side, price,
    qty, fee`` or a FILL_DTYPE array (``fills.csv``), or None. ``period_s``: the length of
    the return periods (the equity as of each period's end); ``"auto"``: 1 s for data
    spanning under 6 hours, else 60 s; None takes one return per row (bars).

    Definitions (risk-free rate 0):

    * period return ``r_k = E_k / E_{k-1} - 1`` on the equity (compounding);
      ``total_return = E_end / capital - 1``;
    * ``max_drawdown``: the largest fall from a running peak of equity, as a fraction of
      that peak; ``max_drawdown_duration_s``: the longest time below a previous peak;
    * ``sharpe_per_period = mean(r) / std(r)`` (sample std) and ``sortino_per_period =
      mean(r) / sqrt(mean(min(r, 0)^2))``, stated with their period;
    * ``sharpe``, ``sortino`` (x sqrt(periods per year)) and ``annualised_return``
      ((1 + total)^(1/years) - 1) only when the data spans at least 30 days and 30 returns,
      periods per year being those observed (returns / years spanned, so a 24/7 market and
      an exchange calendar are each scaled by their own clock); otherwise None, and
      ``annualisation`` says why. Equity that reaches 0 ends the returns there (``ruined``).
    """
    if isinstance(predictions, dict):  # integer times kept exact: {"time_ns", "equity"[, ..]}
        t = np.asarray(predictions["time_ns"])
        if t.dtype.kind not in "iu":
            raise FinanceError("time_ns must be integer nanoseconds")
        t = t.astype(np.int64)
        cols = [predictions["equity"]] + ([predictions["position"]]
                                          if predictions.get("position") is not None else [])
        e = np.column_stack([t.astype(np.float64)] + [np.asarray(c, dtype=np.float64)
                                                      for c in cols])
    else:
        e = np.asarray(predictions, dtype=np.float64)
        t = None
    if e.ndim != 2 or e.shape[1] < 2 or len(e) < 2:
        raise FinanceError(f"equity of shape {e.shape}: give at least 2 rows of time_ns, "
                           "equity[, position]")
    if t is None:
        t = e[:, 0].astype(np.int64)
    eq = e[:, 1]
    if not np.all(np.isfinite(eq)):
        raise FinanceError(f"equity row {int(np.flatnonzero(~np.isfinite(eq))[0])} is not "
                           "finite")
    if np.any(np.diff(t) < 0):
        raise FinanceError(f"equity row {int(np.flatnonzero(np.diff(t) < 0)[0]) + 1}: time "
                           "goes backwards")
    start = float(capital) if capital is not None else float(eq[0])
    if not start > 0:
        raise FinanceError(f"capital {start}: returns need a starting equity > 0")
    span_s = (int(t[-1]) - int(t[0])) / 1e9
    if period_s == "auto":
        period_s = 1.0 if span_s < 6 * 3600 else 60.0
    if period_s is None:
        grid_t = np.r_[t[0], t]
        grid_eq = np.r_[start, eq]
        how = "one return per row"
    else:
        if not isinstance(period_s, (int, float)) or not period_s > 0:
            raise FinanceError(f"period_s={period_s}: give a period > 0 s")
        p = int(period_s * 1e9)
        ends = np.arange((t[0] // p + 1) * p, t[-1] + p, p)
        idx = np.searchsorted(t, ends, side="right") - 1
        grid_t = np.r_[t[0], ends]
        grid_eq = np.r_[start, eq[np.clip(idx, 0, len(eq) - 1)]]
        how = f"returns over {period_s:g} s periods"
    ruin = np.flatnonzero(grid_eq <= 0)
    ruined_ns = None
    if len(ruin):
        ruined_ns = int(grid_t[ruin[0]])
        grid_eq = grid_eq[:ruin[0] + 1]
    r = grid_eq[1:] / grid_eq[:-1] - 1.0
    if ruined_ns is not None:
        r[-1] = -1.0
    total = (eq[-1] - start) / start
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if len(r) else float("nan")
    mean = float(np.mean(r)) if len(r) else float("nan")
    sharpe_p = mean / sd if sd > 0 else None
    sortino_p = mean / downside if downside > 0 else None
    years = span_s / YEAR_S
    reason = None
    if ruined_ns is not None:
        reason = f"equity reached {float(grid_eq[-1]):.6g} at time_ns {ruined_ns}"
    elif span_s / 86400.0 < MIN_ANNUAL_DAYS:
        reason = (f"the data spans {span_s / 86400.0:.4g} days; an annual figure needs at "
                  f"least {MIN_ANNUAL_DAYS:g}")
    elif len(r) < MIN_ANNUAL_RETURNS:
        reason = f"{len(r)} returns; an annual figure needs at least {MIN_ANNUAL_RETURNS}"
    ppy = len(r) / years if years > 0 else float("nan")
    if reason is None:
        sharpe = sharpe_p * float(np.sqrt(ppy)) if sharpe_p is not None else None
        sortino = sortino_p * float(np.sqrt(ppy)) if sortino_p is not None else None
        annual = float((1.0 + total) ** (1.0 / years) - 1.0)
        note = (f"{how}; x sqrt({ppy:.6g}) periods per year observed ({len(r)} returns over "
                f"{span_s / 86400.0:.4g} days); risk-free rate 0")
    else:
        sharpe = sortino = annual = None
        note = f"{how}; not annualised: {reason}; risk-free rate 0"
    curve = np.r_[start, eq]
    times = np.r_[t[0], t]
    peak = np.maximum.accumulate(curve)
    at_peak = np.where(curve >= peak, np.arange(len(curve)), 0)
    last_peak = np.maximum.accumulate(at_peak)
    dd_dur = (times - times[last_peak]) / 1e9
    f = _fills_table(references)
    notional = float(np.sum(f["price"] * f["qty"]))
    trips = round_trips(references) if len(f["qty"]) else np.zeros(0)
    out: dict[str, Any] = {
        "total_return": float(total),
        "annualised_return": annual,
        "sharpe": sharpe,
        "sortino": sortino,
        "sharpe_per_period": sharpe_p,
        "sortino_per_period": sortino_p,
        "period": how,
        "returns": int(len(r)),
        "max_drawdown": float(np.max((peak - curve) / peak)),
        "max_drawdown_duration_s": float(dd_dur.max()),
        "pnl": float(eq[-1] - start),
        "capital": start,
        "fees_paid": float(np.sum(f["fee"])),
        "fills": int(len(f["qty"])),
        "traded_notional": notional,
        "turnover": notional / start,
        "round_trips": int(len(trips)),
        "hit_rate": float(np.mean(trips > 0)) if len(trips) else float("nan"),
        "span_days": span_s / 86400.0,
        "start_ns": int(t[0]),
        "end_ns": int(t[-1]),
        "ruined_ns": ruined_ns,
        "annualisation": note,
    }
    if e.shape[1] >= 3:
        out["exposure"] = float(np.mean(e[:, 2] != 0))
    return out
