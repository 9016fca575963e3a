"""OHLCV bars: the common CSV layouts, rule signals, and a bar-level backtest.

:func:`read_bars` (registered reader ``bars-csv``, kind ``bars``) reads a CSV with a header:
a ``Date`` column (``2006-01-02``) optionally followed by ``Time`` (the Yahoo/backtrader
layout), or one ``timestamp``/``datetime``/``date`` column with date and time (``2021-12-31
23:01:00``, ISO 8601, an offset such as ``+00:00`` allowed); then open, high, low, close
(any case) and optional volume. Times without an offset are taken as UTC. Rows must be in
strictly increasing time, prices finite and > 0, and each bar consistent (low <= open, close
<= high); the first row that is not is an error that names it.

:func:`bar_backtest` trades a signal decided on each bar's close at the *next* bar's open
(the earliest a decision made on a close can trade: no lookahead), paying ``slippage_bps``
against the trade and ``fee_bps`` of the notional, and marks the position to each close.
Rules (:func:`rule_signals`): ``sma:FAST,SLOW`` (long while the fast simple moving average
is above the slow one, short below; ``long-only`` flat instead), ``momentum:N`` (the sign of
the return over N bars) and ``buy-and-hold``, the baseline every rule is shown beside.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.finance.backtest import FILL_DTYPE, BacktestConfig, BacktestResult
from deepseek.finance.capture import open_binary, open_text
from deepseek.finance.errors import TickFileError

BAR_DTYPE = np.dtype([("time_ns", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"),
                      ("close", "<f8"), ("volume", "<f8")])
TIME_COLUMNS = ("timestamp", "datetime", "date", "time")


def is_bars(path: str | Path) -> bool:
    """Whether ``path`` is a CSV whose header names open, high, low and close."""
    p = Path(path)
    if not p.is_file():
        return False
    try:  # the first 4 KiB, leniently decoded: a header in bad UTF-8 still finds this
        with open_binary(p) as raw:  # reader, whose error then names the file
            head = raw.read(4096).decode("utf-8", errors="replace").split("\n", 1)[0]
    except (OSError, TickFileError):
        return False
    cols = {c.strip().lower() for c in head.split(",")}
    return {"open", "high", "low", "close"} <= cols


def _parse_time(text: str) -> int:
    s = text.strip()
    if len(s) == 8 and s.isdigit():  # 20060102
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def read_bars(path: str | Path) -> np.ndarray:
    """Bars (:data:`BAR_DTYPE`) from an OHLCV CSV (plain, .gz or .zst)."""
    path = Path(path)
    if not path.is_file():
        raise TickFileError(f"{path}: no such file")
    rows: list[tuple] = []
    with open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise TickFileError(f"{path}: empty file")
        cols = [c.strip().lower() for c in header]
        missing = [c for c in ("open", "high", "low", "close") if c not in cols]
        tcols = [c for c in TIME_COLUMNS if c in cols]
        if missing or not tcols:
            raise TickFileError(
                f"{path}: the header {header} lacks {missing or 'a time column'}; bars "
                "need Date[,Time] or timestamp, then Open, High, Low, Close[, Volume]")
        if "date" in cols and "time" in cols:
            when = [cols.index("date"), cols.index("time")]
        else:
            when = [cols.index(tcols[0])]
        idx = [cols.index(c) for c in ("open", "high", "low", "close")]
        vol = cols.index("volume") if "volume" in cols else -1
        prev = None
        for line, r in enumerate(reader, start=2):
            if not any(c.strip() for c in r):
                continue
            if len(r) < len(cols):
                raise TickFileError(f"{path}, line {line}: {len(r)} fields, the header "
                                    f"has {len(cols)}")
            try:
                t = _parse_time(" ".join(r[i] for i in when))
                o, h, lo, c = (float(r[i]) for i in idx)
                v = float(r[vol]) if vol >= 0 and r[vol].strip() else math.nan
            except ValueError as exc:
                raise TickFileError(f"{path}, line {line}: {exc}") from None
            if not all(math.isfinite(x) and x > 0 for x in (o, h, lo, c)):
                raise TickFileError(f"{path}, line {line}: prices must be finite and > 0 "
                                    f"(open={o}, high={h}, low={lo}, close={c})")
            if not (lo <= min(o, c) and max(o, c) <= h):
                raise TickFileError(f"{path}, line {line}: inconsistent bar (low {lo} "
                                    f"must be <= open {o}, close {c} <= high {h})")
            if prev is not None and t <= prev:
                what = "a duplicate time" if t == prev else "time goes backwards"
                stamp = " ".join(r[i] for i in when)
                raise TickFileError(f"{path}, line {line}: {what} ({stamp}); bars must be "
                                    "in strictly increasing time")
            prev = t
            rows.append((t, o, h, lo, c, v))
    if not rows:
        raise TickFileError(f"{path}: no bars (only a header)")
    return np.array(rows, dtype=BAR_DTYPE)


DAY_NS = 86_400 * 1_000_000_000


def calendar_gaps(bars: np.ndarray, calendar: str | None = None,
                  show: int = 5) -> dict[str, Any]:
    """Where the bars leave out time the market was open.

    With ``calendar`` (an ``exchange_calendars`` name: ``XNYS``, ``XLON``, ``XFRA``,
    ``24/5`` for FX, ``24/7`` for crypto, ...): daily bars are compared with the calendar's
    sessions, intraday bars with its trading minutes at the bars' interval (bar times taken
    as the start or the end of each bar, whichever matches better); the result counts the
    sessions or intervals with no bar (``missing``) and the bars outside the calendar
    (``outside``), with the first few of each. Without a calendar, daily bars are compared
    with the weekdays (holidays then count as missing: name the exchange to tell them
    apart) and intraday bars report the silences longer than 1.5 intervals."""
    t = bars["time_ns"].astype(np.int64)
    if len(t) < 2:
        return {"calendar": calendar, "interval_s": None, "missing": 0, "outside": 0}
    step = int(np.median(np.diff(t)))
    daily = step >= 20 * 3600 * 1_000_000_000
    out: dict[str, Any] = {"calendar": calendar or ("weekdays" if daily else None),
                           "interval_s": step / 1e9, "bars": int(len(t))}

    with warnings.catch_warnings():  # exchange_calendars' own pandas deprecation notices
        warnings.filterwarnings("ignore", module="pandas")
        warnings.filterwarnings("ignore", module="exchange_calendars")
        return _calendar_gaps(t, step, daily, calendar, out, show)


def _calendar_gaps(t: np.ndarray, step: int, daily: bool, calendar: str | None,
                   out: dict[str, Any], show: int) -> dict[str, Any]:
    def iso(ns: np.ndarray) -> list[str]:
        unit = "D" if daily else "s"
        return [str(v) for v in ns[:show].astype("datetime64[ns]").astype(f"datetime64[{unit}]")]

    if calendar is None and not daily:
        gaps = np.flatnonzero(np.diff(t) > 1.5 * step)
        out.update(missing=None, outside=0, silences=int(len(gaps)),
                   first_silences=iso(t[gaps]),
                   note="intraday bars without --calendar: silences are listed, not judged "
                        "(name the exchange's calendar to tell closures from missing bars)")
        return out
    if calendar is None:
        days = (t // DAY_NS).astype("datetime64[D]")
        expected = np.arange(days[0], days[-1] + 1, dtype="datetime64[D]")
        expected = expected[np.is_busday(expected)]
    else:
        try:
            import exchange_calendars as xcals
            import pandas as pd
        except ImportError:
            raise TickFileError("checking bars against an exchange calendar needs "
                                "exchange_calendars: pip install 'deepseek-finance[full]'") \
                from None
        first, last = pd.Timestamp(int(t[0]), unit="ns"), pd.Timestamp(int(t[-1]), unit="ns")
        try:
            cal = xcals.get_calendar(calendar, start=first.normalize() - pd.Timedelta(days=7),
                                     end=last.normalize() + pd.Timedelta(days=7))
        except Exception as exc:  # unknown name, or a range the calendar does not cover
            names = [n for n in xcals.get_calendar_names(include_aliases=False)][:12]
            raise TickFileError(f"calendar {calendar!r}: {exc} (names are exchange codes "
                                f"such as {', '.join(names)}, ...)") from None
        if daily:
            sessions = cal.sessions_in_range(first.normalize(), last.normalize())
            expected = np.asarray(sessions.values, dtype="datetime64[D]")
            days = (t // DAY_NS).astype("datetime64[D]")
        else:
            day = pd.Timedelta(days=1)  # local readings lie up to a day from the UTC one
            minutes = cal.minutes_in_range(max(first.tz_localize("UTC") - day,
                                               cal.first_minute),
                                           min(last.tz_localize("UTC") + day, cal.last_minute))
            mins = minutes.asi8.astype(np.int64)
            k = max(1, round(step / 60e9))
            # a time written without a zone is read as UTC; bar files often hold the
            # exchange's local time: both readings are tried, and the bar time as the start
            # or the end of the bar, and the reading that fits the calendar best is kept
            local = pd.DatetimeIndex(t).tz_localize(cal.tz, ambiguous="NaT",
                                                    nonexistent="NaT").tz_convert("UTC")
            readings = [("UTC", t), (str(cal.tz), local.asi8[~local.isna()].astype(np.int64))]
            best = None
            for zone, times in readings:
                for shift in (0, step):  # bar time = its start, or its end
                    starts = times - shift
                    grid = mins[(mins >= starts[0]) & (mins <= starts[-1])]
                    grid = grid[(grid - int(starts[0])) % (k * 60_000_000_000) == 0]
                    miss = np.setdiff1d(grid, starts, assume_unique=True)
                    extra = np.setdiff1d(starts, mins, assume_unique=True)
                    if best is None or len(miss) + len(extra) < best[0]:
                        best = (len(miss) + len(extra), zone, shift, miss, extra)
            _, zone, shift, miss, extra = best
            out.update(missing=int(len(miss)), outside=int(len(extra)),
                       first_missing=iso(miss), first_outside=iso(extra + shift),
                       bar_time=("end" if shift else "start") + f" of the bar, read as {zone}"
                       + (" (times shown in UTC)" if zone != "UTC" else ""))
            return out
    miss = np.setdiff1d(expected, days)
    extra = np.setdiff1d(days, expected)
    out.update(missing=int(len(miss)), outside=int(len(extra)),
               first_missing=[str(d) for d in miss[:show]],
               first_outside=[str(d) for d in extra[:show]])
    return out


def gap_warning(path: Any, gaps: dict[str, Any]) -> str | None:
    """One line for a report when ``gaps`` (:func:`calendar_gaps`) found anything."""
    if gaps.get("missing") is None:  # intraday without a calendar: listed, not judged
        return None
    unit = "session(s)" if gaps["interval_s"] >= 20 * 3600 else "interval(s)"
    parts = []
    if gaps["missing"]:
        parts.append(f"{gaps['missing']} {unit} of {gaps['calendar']} have no bar (the first: "
                     f"{', '.join(gaps['first_missing'])})")
    if gaps["outside"]:
        parts.append(f"{gaps['outside']} bar(s) fall outside {gaps['calendar']} (the first: "
                     f"{', '.join(gaps['first_outside'])})")
    if not parts:
        return None
    hint = "; holidays count as missing against plain weekdays: give --calendar" \
        if gaps["calendar"] == "weekdays" else ""
    return f"{path}: " + "; ".join(parts) + hint


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        c = np.cumsum(np.r_[0.0, x])
        out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def rule_signals(bars: np.ndarray, rule: str, long_only: bool = False) -> np.ndarray:
    """One signal (-1, 0, +1) per bar from ``rule``, known at that bar's close."""
    close = bars["close"]
    name, _, arg = rule.partition(":")
    try:
        if name == "buy-and-hold":
            sig = np.ones(len(bars), dtype=np.int64)
        elif name == "sma":
            fast, slow = (int(v) for v in arg.split(","))
            if not 1 <= fast < slow:
                raise ValueError("need 1 <= FAST < SLOW")
            f, s = _sma(close, fast), _sma(close, slow)
            sig = np.where(np.isnan(s), 0, np.where(f > s, 1, -1)).astype(np.int64)
        elif name == "momentum":
            n = int(arg)
            if n < 1:
                raise ValueError("need N >= 1")
            sig = np.zeros(len(bars), dtype=np.int64)
            sig[n:] = np.sign(close[n:] - close[:-n]).astype(np.int64)
        else:
            raise ValueError("unknown rule")
    except ValueError as exc:
        raise TickFileError(f"rule {rule!r}: {exc}; use sma:FAST,SLOW, momentum:N or "
                            "buy-and-hold") from None
    return np.maximum(sig, 0) if long_only else sig


def bar_backtest(bars: np.ndarray, signals: np.ndarray, *, size: float = 1.0,
                 fee_bps: float = 4.0, slippage_bps: float = 0.0,
                 capital: float | None = None, sizing: str = "quantity") -> BacktestResult:
    """Trade in the direction of each bar's signal at the next bar's open; equity after each
    bar's close. ``sizing``: what ``size`` counts (``quantity`` units, ``notional`` quote
    currency, or ``equity`` a fraction of the equity at that open, which needs
    ``capital``); a position is sized when its direction is taken and held at that size."""
    n = len(bars)
    if n < 2:
        raise TickFileError(f"{n} bar(s): a bar backtest needs at least 2")
    sig = np.asarray(signals)
    if sig.shape != (n,):
        raise TickFileError(f"{len(sig)} signals for {n} bars: give one per bar")
    cfg = BacktestConfig(size=size, max_position=size, taker_fee_bps=fee_bps, hold_ticks=0,
                         capital=capital, sizing=sizing)
    if not (math.isfinite(slippage_bps) and 0 <= slippage_bps < 1000):
        raise TickFileError(f"slippage_bps={slippage_bps}: give 0 <= slippage < 1000 bps")
    if capital is not None:
        cap = float(capital)
    else:
        cap = size * (float(bars["open"][0]) if sizing == "quantity" else 1.0)
    pos, cash = 0.0, 0.0
    units, sized_dir = 0.0, 0
    equity = np.empty(n)
    position = np.empty(n)
    fills = []
    for i in range(n):
        if i > 0:
            direction = int(np.sign(np.clip(sig[i - 1], -1, 1)))
            if direction != sized_dir:
                sized_dir = direction
                if sizing == "quantity":
                    units = size
                else:
                    base = 1.0 if sizing == "notional" else max(cap + cash
                                                                + pos * bars["open"][i], 0.0)
                    units = size * base / bars["open"][i]
            target = float(np.clip(sig[i - 1], -1, 1)) * units
            delta = target - pos
            if delta != 0.0:
                side = 1 if delta > 0 else -1
                px = bars["open"][i] * (1.0 + side * slippage_bps * 1e-4)
                fee = abs(delta) * px * fee_bps * 1e-4
                cash -= delta * px + fee
                pos = target
                fills.append((bars["time_ns"][i], side, px, abs(delta), fee, False, len(fills)))
        equity[i] = cap + cash + pos * bars["close"][i]
        position[i] = pos
    return BacktestResult(bars["time_ns"].copy(), equity, position,
                          np.array(fills, dtype=FILL_DTYPE), {"orders_sent": len(fills)},
                          cfg, cap)
