"""The fast path: feature update + model forward in one compiled, allocation-free call.

    fp = FastPath.from_model(model)               # a TickMLP or TickGRU (or a LoadedModel)
    decision, scores = fp.on_tick(time_ns, bid, ask, bid_size, ask_size, bid_depth, ask_depth,
                                  last_px, last_size, side)

    fp = FastPath.from_file("tick-mlp.safetensors")  # a saved model, without PyTorch

``FastPath.from_model`` (or ``from_file`` / ``from_weights``, which read the weights with
numpy alone, so the fast path runs in an edge install) copies the model's float32 weights
into one flat array and compiles (numba ``njit``) a kernel specialised to the layer sizes.
Each call updates the streaming features (:mod:`deepseek.finance.features`), standardises
them in float32 as the model does, runs the network with float64 accumulation over
preallocated buffers (the GRU hidden state carried from tick to tick) and returns the
decision (-1 down, 0 flat, +1 up: the arg-max class) and the class logits (a view of an
internal buffer, overwritten by the next call; copy it to keep it). Logits equal the PyTorch
model's on the same features within 1e-5. A feature or logit that is not finite is never
returned as a decision: ``on_tick`` raises :class:`FastPathError` and ``step`` returns -1
(the caller resets the state).

``FastPath.decide(ticks)`` gives the decisions of a whole tick array (a backtest's): the
features tick by tick in one compiled loop, then, for an MLP, each layer as one float64
matrix product over blocks of 4,096 ticks (each row still sees only its own tick's
features, so there is no lookahead). Rows whose two best logits come within 1e-9 of each
other, or that are not finite, are recomputed by the per-tick forward, so the decisions are
exactly those of ``step`` tick by tick (tested), at about three times the speed.
"""

from __future__ import annotations

import functools
import math
from operator import index
from typing import Any

import numpy as np
from numba import njit, typeof

from deepseek.finance.errors import FastPathError
from deepseek.finance.features import N_FEATURES, new_state, update_features
from deepseek.finance.ticks import tick_args

DECISIONS = (-1, 0, 1)  # class index (down, flat, up) -> decision

NONFINITE = ("a feature or a logit is not finite (an input far outside the model's range?); "
             "the answer is not a decision: reset() the fast path")


@njit(inline="always")
def _sigmoid(x):  # pragma: no cover - compiled
    return 1.0 / (1.0 + math.exp(-x))


@njit(inline="always")
def _f32(x):  # pragma: no cover - compiled
    return np.float64(np.float32(x))


@njit(inline="always")
def _standardised_features(fs, is_, w, buf, nf, time_ns, bid, ask, bsz, asz, bdepth, adepth,
                           last_px, last_sz, side):  # pragma: no cover - compiled
    """Features into buf[0:nf] (rounded to float32, as the model sees them) and, standardised
    in float32 with the mean/std at the head of ``w``, into buf[nf:2nf]."""
    update_features(fs, is_, buf[0:nf], time_ns, bid, ask, bsz, asz, bdepth, adepth, last_px,
                    last_sz, side)
    for i in range(nf):
        x = _f32(buf[i])
        buf[i] = x
        buf[nf + i] = _f32(_f32(x - w[i]) / w[nf + i])


@njit(inline="always")
def _checked(buf, nf, lo, n_out, best):  # pragma: no cover - compiled
    """``best``, or -1 when a feature or a logit is not finite (x - x is NaN for NaN and
    infinities)."""
    for i in range(nf):
        if buf[i] - buf[i] != 0.0:
            return -1
    for o in range(n_out):
        if buf[lo + o] - buf[lo + o] != 0.0:
            return -1
    return best


# Both kernels share one signature: (float state, int state, weights, work buffer, tick).
# The work buffer (float64) starts with the 17 features, rounded to float32 as the PyTorch
# model would see them; standardisation is done in float32 like PyTorch; the layers
# accumulate in float64 (weights are the model's float32 values), so the logits differ from
# PyTorch's float32 results by PyTorch's own rounding only.


@functools.lru_cache(maxsize=32)
def _mlp_kernel(dims: tuple[int, ...], relu: bool):
    """A kernel for an MLP with layer widths ``dims`` (input first)."""
    n_layers = len(dims) - 1
    nf = dims[0]
    offsets = []
    off = 2 * nf  # mean, std first
    for i in range(n_layers):
        offsets.append(off)
        off += dims[i] * dims[i + 1] + dims[i + 1]
    offsets_t = tuple(offsets)
    dims_t = tuple(dims)
    max_w = max(dims)
    n_out = dims[-1]
    a0, b0, lo = nf, nf + max_w, nf + 2 * max_w  # buffer layout (a0 = nf: standardised x)

    @njit(inline="always")
    def forward(w, buf):  # pragma: no cover - compiled
        """The layers over the standardised features in buf[a0:a0+nf]; logits into
        buf[lo:lo+n_out]; the arg-max class, or -1 when not finite."""
        for layer in range(n_layers):
            n_in = dims_t[layer]
            n_o = dims_t[layer + 1]
            base = offsets_t[layer]  # weights stored transposed: (n_in, n_o), then bias
            bias = base + n_in * n_o
            for o in range(n_o):
                buf[b0 + o] = w[bias + o]
            for i in range(n_in):
                ai = buf[a0 + i]
                row = base + i * n_o
                for o in range(n_o):  # independent outputs: vectorises without reassociation
                    buf[b0 + o] += w[row + o] * ai
            last = layer == n_layers - 1
            for o in range(n_o):
                v = buf[b0 + o]
                if not last:
                    if relu:
                        v = v if v > 0.0 else 0.0
                    else:
                        v = math.tanh(v)
                buf[a0 + o] = v
        best = 0
        for o in range(n_out):
            buf[lo + o] = buf[a0 + o]
            if buf[lo + o] > buf[lo + best]:
                best = o
        return _checked(buf, nf, lo, n_out, best)

    @njit(nogil=True)
    def kernel(fs, is_, w, buf, time_ns, bid, ask, bsz, asz, bdepth, adepth, last_px, last_sz,
               side):  # pragma: no cover - compiled
        _standardised_features(fs, is_, w, buf, nf, time_ns, bid, ask, bsz, asz, bdepth,
                               adepth, last_px, last_sz, side)
        return forward(w, buf)

    @njit(nogil=True)
    def rows(w, buf, feat, x, idx, out, logits):  # pragma: no cover - compiled
        """The per-tick forward, exactly as ``kernel`` runs it, for the rows ``idx`` of
        already computed features ``feat`` (float32-rounded) and standardised ``x``."""
        for r in idx:
            for i in range(nf):
                buf[i] = feat[r, i]
                buf[a0 + i] = x[r, i]
            out[r] = forward(w, buf)
            for o in range(n_out):
                logits[r, o] = buf[lo + o]

    kernel.rows = rows
    kernel.mlp_layout = (dims_t, offsets_t, relu)
    kernel.buf_layout = (a0, lo)
    return kernel, lo + n_out, lo


@functools.lru_cache(maxsize=32)
def _gru_kernel(nf: int, hidden: int, n_out: int):
    H = hidden
    o_wih = 2 * nf  # after mean and std
    o_whh = o_wih + 3 * H * nf
    o_bih = o_whh + 3 * H * H
    o_bhh = o_bih + 3 * H
    o_wo = o_bhh + 3 * H
    o_bo = o_wo + n_out * H
    # buffer: [0:nf] features, [nf:2nf] x, [h0:h0+H] h, [g0:g0+6H] gates, [lo:lo+n_out] logits
    h0 = 2 * nf
    g0 = h0 + H
    lo = g0 + 6 * H

    @njit(nogil=True)
    def kernel(fs, is_, w, buf, time_ns, bid, ask, bsz, asz, bdepth, adepth, last_px, last_sz,
               side):  # pragma: no cover - compiled
        _standardised_features(fs, is_, w, buf, nf, time_ns, bid, ask, bsz, asz, bdepth,
                               adepth, last_px, last_sz, side)
        # gi = W_ih x + b_ih ; gh = W_hh h + b_hh (gates ordered r, z, n); the weights are
        # stored transposed so that the inner loops run over independent outputs
        for r in range(3 * H):
            buf[g0 + r] = w[o_bih + r]
            buf[g0 + 3 * H + r] = w[o_bhh + r]
        for i in range(nf):
            xi = buf[nf + i]
            row = o_wih + i * 3 * H
            for r in range(3 * H):
                buf[g0 + r] += w[row + r] * xi
        for j in range(H):
            hj = buf[h0 + j]
            row = o_whh + j * 3 * H
            for r in range(3 * H):
                buf[g0 + 3 * H + r] += w[row + r] * hj
        for j in range(H):
            rg = _sigmoid(buf[g0 + j] + buf[g0 + 3 * H + j])
            zg = _sigmoid(buf[g0 + H + j] + buf[g0 + 4 * H + j])
            ng = math.tanh(buf[g0 + 2 * H + j] + rg * buf[g0 + 5 * H + j])
            buf[h0 + j] = (1.0 - zg) * ng + zg * buf[h0 + j]
        for o in range(n_out):
            buf[lo + o] = w[o_bo + o]
        for j in range(H):
            hj = buf[h0 + j]
            row = o_wo + j * n_out
            for o in range(n_out):
                buf[lo + o] += w[row + o] * hj
        best = 0
        for o in range(n_out):
            if buf[lo + o] > buf[lo + best]:
                best = o
        return _checked(buf, nf, lo, n_out, best)

    return kernel, lo + n_out, lo, h0


@njit(nogil=True)
def _decide_all(kernel, fs, is_, w, buf, t, bid, ask, bs, as_, bd, ad, lp, ls, side,
                out):  # pragma: no cover - compiled
    """The kernel over a whole tick array in one compiled loop (numba specialises this loop
    for each kernel it is given): class index per tick, -1 where not finite."""
    for i in range(len(t)):
        out[i] = kernel(fs, is_, w, buf, t[i], bid[i], ask[i], bs[i], as_[i], bd[i], ad[i],
                        lp[i], ls[i], side[i])


@njit(cache=True, nogil=True)
def _features_all(fs, is_, w, nf, t, bid, ask, bs, as_, bd, ad, lp, ls, side, start, feat,
                  x):  # pragma: no cover - compiled
    """Streaming features of ticks ``start .. start + len(feat)`` into ``feat`` (float32-
    rounded) and, standardised exactly as the kernels do, into ``x``."""
    tmp = np.empty(nf, dtype=np.float64)
    for r in range(len(feat)):
        i = start + r
        update_features(fs, is_, tmp, t[i], bid[i], ask[i], bs[i], as_[i], bd[i], ad[i], lp[i],
                        ls[i], side[i])
        for k in range(nf):
            v = _f32(tmp[k])
            feat[r, k] = v
            x[r, k] = _f32(_f32(v - w[k]) / w[nf + k])


@njit(cache=True, nogil=True)
def _argmax_or_redo(feat, h, out, margin):  # pragma: no cover - compiled
    """Arg-max class of each row of logits ``h`` into ``out``; returns the rows to redo in
    the per-tick order: a feature or logit not finite, or the two best logits within
    ``margin`` (relative to the larger, at least 1)."""
    redo = np.empty(len(h), dtype=np.int64)
    k = 0
    for r in range(len(h)):
        ok = True
        for i in range(feat.shape[1]):
            if feat[r, i] - feat[r, i] != 0.0:
                ok = False
        best = 0
        for o in range(h.shape[1]):
            if h[r, o] - h[r, o] != 0.0:
                ok = False
            if h[r, o] > h[r, best]:
                best = o
        second = -np.inf
        for o in range(h.shape[1]):
            if o != best and h[r, o] > second:
                second = h[r, o]
        top = h[r, best]
        if not ok or top - second <= margin * max(1.0, abs(top)):
            redo[k] = r
            k += 1
        out[r] = best
    return redo[:k]


# Rows whose two best logits from the batched forward lie closer than this (relative to the
# larger) are recomputed in the per-tick kernel's own order; the batched sums differ from it
# by float64 rounding (~1e-15 relative), far inside this margin.
_TIE_MARGIN = 1e-9
_BLOCK = 1 << 12


class FastPath:
    """A compiled tick -> decision path for a :class:`TickMLP` or :class:`TickGRU`."""

    def __init__(self, kind: str, kernel: Any, weights: np.ndarray, buf_size: int,
                 logits_at: int, n_out: int, hidden_at: int | None = None,
                 hidden: int = 0) -> None:
        self.kind = kind
        self._kernel = kernel
        self.weights = weights
        self.buf = np.zeros(buf_size, dtype=np.float64)
        self.fs, self.istate = new_state()
        self.scores = self.buf[logits_at:logits_at + n_out]
        self.features = self.buf[:N_FEATURES]
        self._hidden_at = hidden_at
        self.hidden = self.buf[hidden_at:hidden_at + hidden] if hidden_at is not None else None
        # compile now, not on tick one; then call the compiled machine-code wrapper of that
        # one signature directly, skipping numba's per-call type dispatch (about 0.5 µs)
        warm = (self.fs, self.istate, weights, self.buf, 1, 1.0, 1.01, 1.0, 1.0, 1.0, 1.0,
                math.nan, 0.0, 0)
        kernel(*warm)
        compiled = kernel.overloads.get(tuple(typeof(a) for a in warm))
        k = compiled.entry_point if compiled is not None else kernel
        # the per-tick entry points close over the arrays, saving attribute look-ups per call
        fs_, is_, w_, b_, sc = self.fs, self.istate, weights, self.buf, self.scores

        def on_tick(time_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
                    bid_depth: float = math.nan, ask_depth: float = math.nan,
                    last_px: float = math.nan, last_size: float = 0.0,
                    side: int = 0) -> tuple[int, np.ndarray]:
            if bid_depth != bid_depth:  # no book: the top sizes
                bid_depth, ask_depth = bid_size, ask_size
            # index(): integers only (a float time would otherwise be truncated)
            best = k(fs_, is_, w_, b_, index(time_ns), bid, ask, bid_size, ask_size,
                     bid_depth, ask_depth, last_px, last_size, index(side))
            if best < 0:
                raise FastPathError(NONFINITE)
            return DECISIONS[best], sc

        def step(time_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
                 bid_depth: float, ask_depth: float, last_px: float, last_size: float,
                 side: int) -> int:
            return k(fs_, is_, w_, b_, time_ns, bid, ask, bid_size, ask_size, bid_depth,
                     ask_depth, last_px, last_size, side)

        on_tick.__doc__ = FastPath.on_tick.__doc__
        step.__doc__ = FastPath.step.__doc__
        self.on_tick = on_tick  # type: ignore[method-assign]
        self.step = step  # type: ignore[method-assign]
        self.redone = 0  # rows the batched decide() handed back to the per-tick forward
        self.reset()

    @classmethod
    def from_model(cls, model: Any, features: Any = None) -> FastPath:
        """Compile ``model`` (TickMLP, TickGRU, or a LoadedModel wrapping one).

        ``features`` may be a :class:`StreamingFeatures` (only its layout is used; the fast
        path keeps its own state) or ``None``.
        """
        module = getattr(model, "module", model)
        if features is not None and getattr(features, "n_features", N_FEATURES) != N_FEATURES:
            raise FastPathError(f"the fast path computes the {N_FEATURES} standard tick features")
        from deepseek.finance.models import TickGRU, TickMLP  # a torch module: torch is here

        state = {k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()} \
            if isinstance(module, (TickMLP, TickGRU)) else {}
        if isinstance(module, TickMLP):
            acts = {type(m).__name__ for m in module.net if type(m).__name__ != "Linear"}
            if acts - {"ReLU", "Tanh"} or len(acts) > 1:
                raise FastPathError(f"unsupported activations {sorted(acts)}")
            return cls.from_weights("tick-mlp", state, relu=acts != {"Tanh"})
        if isinstance(module, TickGRU):
            g = module.gru
            if g.num_layers != 1 or g.bidirectional or not g.bias:
                raise FastPathError("the fast path supports a single-layer, unidirectional GRU "
                                    "with biases")
            return cls.from_weights("tick-gru", state)
        raise FastPathError(f"cannot compile {type(module).__name__}: the fast path supports "
                            "TickMLP and TickGRU")

    @classmethod
    def from_weights(cls, architecture: str, tensors: dict[str, np.ndarray], *,
                     relu: bool = True, source: str = "weights") -> FastPath:
        """Compile a ``tick-mlp`` or ``tick-gru`` from its tensors (the state dict as numpy
        arrays, as :func:`safetensors.numpy.load_file` reads a saved model) -- no PyTorch.
        ``relu``: the MLP's activation (``False``: tanh)."""
        def get(key: str) -> np.ndarray:
            if key not in tensors:
                raise FastPathError(f"{source}: tensor {key!r} is missing (a {architecture} "
                                    f"has {sorted(tensors)[:8]} ...)")
            return np.asarray(tensors[key], dtype=np.float32)

        def flat(parts: list[np.ndarray]) -> np.ndarray:
            w = np.concatenate([np.ascontiguousarray(p, dtype=np.float32).reshape(-1)
                                for p in parts])
            if not np.isfinite(w).all():
                raise FastPathError(f"{source}: the weights hold NaN or infinite values")
            return w.astype(np.float64)

        if architecture == "tick-mlp":
            idx = sorted(int(k.split(".")[1]) for k in tensors
                         if k.startswith("net.") and k.endswith(".weight"))
            if not idx:
                raise FastPathError(f"{source}: no net.<i>.weight tensors: not a tick-mlp")
            mats = [get(f"net.{i}.weight") for i in idx]
            dims = [mats[0].shape[1]] + [m.shape[0] for m in mats]
            if any(m.ndim != 2 or m.shape[1] != d for m, d in zip(mats, dims)):
                raise FastPathError(f"{source}: layer shapes {[m.shape for m in mats]} do not "
                                    "chain")
            if dims[0] != N_FEATURES:
                raise FastPathError(f"{source}: the model takes {dims[0]} features, the fast "
                                    f"path computes {N_FEATURES}")
            parts = [get("mean"), get("std")]
            for i, m in zip(idx, mats):
                parts += [m.T, get(f"net.{i}.bias")]
            kernel, size, logits_at = _mlp_kernel(tuple(dims), relu=relu)
            return cls("mlp", kernel, flat(parts), size, logits_at, dims[-1])
        if architecture == "tick-gru":
            wih, whh, head = get("gru.weight_ih_l0"), get("gru.weight_hh_l0"), get("head.weight")
            if any(k.endswith("_l1") or k.endswith("_reverse") for k in tensors):
                raise FastPathError(f"{source}: the fast path supports a single-layer, "
                                    "unidirectional GRU")
            H, nf, n_out = whh.shape[1], wih.shape[1], head.shape[0]
            if wih.shape[0] != 3 * H or whh.shape[0] != 3 * H or head.shape[1] != H:
                raise FastPathError(f"{source}: GRU shapes {wih.shape}, {whh.shape}, "
                                    f"{head.shape} do not fit together")
            if nf != N_FEATURES:
                raise FastPathError(f"{source}: the model takes {nf} features, the fast path "
                                    f"computes {N_FEATURES}")
            parts = [get("mean"), get("std"), wih.T, whh.T, get("gru.bias_ih_l0"),
                     get("gru.bias_hh_l0"), head.T, get("head.bias")]
            kernel, size, logits_at, h_at = _gru_kernel(nf, H, n_out)
            return cls("gru", kernel, flat(parts), size, logits_at, n_out, h_at, H)
        raise FastPathError(f"{source}: architecture {architecture!r}: the fast path supports "
                            "tick-mlp and tick-gru")

    @classmethod
    def from_file(cls, path: Any) -> FastPath:
        """Compile a ``.safetensors`` tick model saved by training (its architecture and
        config read from the file) -- no PyTorch."""
        from pathlib import Path

        from safetensors.numpy import load_file

        from deepseek.loader import read_model_config

        path = Path(path)
        arch, cfg = read_model_config(path)
        if arch not in ("tick-mlp", "tick-gru"):
            raise FastPathError(f"{path}: architecture {arch!r}; the fast path compiles "
                                "tick-mlp and tick-gru")
        try:
            tensors = load_file(str(path))
        except Exception as exc:
            raise FastPathError(f"{path}: not a readable safetensors file ({exc})") from exc
        act = cfg.get("activation", "relu")
        if act not in ("relu", "tanh"):
            raise FastPathError(f"{path}: activation {act!r}; the fast path runs relu and tanh")
        return cls.from_weights(arch, tensors, relu=act == "relu", source=str(path))

    def on_tick(self, time_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
                bid_depth: float = math.nan, ask_depth: float = math.nan,
                last_px: float = math.nan, last_size: float = 0.0,
                side: int = 0) -> tuple[int, np.ndarray]:
        """Update on one tick; returns (decision -1/0/+1, logits view). Without depths (NaN)
        the book depth is the top sizes.

        (Replaced per instance by an equivalent closure that skips attribute look-ups.)
        """
        if bid_depth != bid_depth:
            bid_depth, ask_depth = bid_size, ask_size
        best = self._kernel(self.fs, self.istate, self.weights, self.buf, time_ns, bid, ask,
                            bid_size, ask_size, bid_depth, ask_depth, last_px, last_size, side)
        if best < 0:
            raise FastPathError(NONFINITE)
        return DECISIONS[best], self.scores

    def step(self, time_ns: int, bid: float, ask: float, bid_size: float, ask_size: float,
             bid_depth: float, ask_depth: float, last_px: float, last_size: float,
             side: int) -> int:
        """Like :meth:`on_tick` with every field given; returns only the class index (0 down,
        1 flat, 2 up), or -1 when a feature or a logit is not finite (then :meth:`reset`)."""
        return self._kernel(self.fs, self.istate, self.weights, self.buf, time_ns, bid, ask,
                            bid_size, ask_size, bid_depth, ask_depth, last_px, last_size, side)

    def run(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed a TICK_DTYPE array; returns (class index per tick, -1 where not finite;
        logits per tick)."""
        cls_ = np.empty(len(ticks), dtype=np.int64)
        logits = np.empty((len(ticks), len(self.scores)), dtype=np.float64)
        for i, t in enumerate(ticks):
            cls_[i] = self.step(*tick_args(t))
            logits[i] = self.scores
        return cls_, logits

    def decide(self, ticks: np.ndarray) -> np.ndarray:
        """Decisions (-1 down, 0 flat, +1 up; -2 where a feature or logit was not finite) for
        a TICK_DTYPE array, in one compiled loop over the same kernel as :meth:`on_tick`, the
        state carried on from earlier calls (:meth:`reset` first for a fresh start). Each
        decision depends only on its tick and the ticks before it."""
        cols = [np.ascontiguousarray(ticks[k], dtype=np.float64) for k in
                ("bid", "ask", "bid_size", "ask_size", "bid_depth", "ask_depth", "last_px",
                 "last_size")]
        t = np.ascontiguousarray(ticks["time_ns"], dtype=np.int64)
        side = ticks["side"].astype(np.int64)
        out = np.empty(len(ticks), dtype=np.int64)
        rows = getattr(self._kernel, "rows", None)
        if rows is None or len(ticks) == 0:  # the GRU carries a state from tick to tick
            _decide_all(self._kernel, self.fs, self.istate, self.weights, self.buf, t, *cols,
                        side, out)
            return out - 1
        self._decide_batched(rows, t, cols, side, out)
        return out - 1

    def _decide_batched(self, rows: Any, t: np.ndarray, cols: list[np.ndarray],
                        side: np.ndarray, out: np.ndarray) -> None:
        """An MLP's decisions in blocks: the streaming features tick by tick (compiled), then
        each layer as one matrix product over the block, then the arg-max; rows that are
        not finite or whose two best logits nearly tie are recomputed by the per-tick
        forward, so every decision equals :meth:`step`'s on the same ticks. Afterwards
        :attr:`features` and :attr:`scores` are the last tick's (the scores from the batched
        sums unless that row was recomputed: equal to step()'s within float64 rounding)."""
        dims, offsets, relu = self._kernel.mlp_layout
        nf, w = dims[0], self.weights
        layers = [(w[o:o + a * b].reshape(a, b), w[o + a * b:o + a * b + b])
                  for a, b, o in zip(dims[:-1], dims[1:], offsets)]
        n = len(t)
        width = max(dims)
        feat = np.empty((_BLOCK, nf), dtype=np.float64)
        x = np.empty((_BLOCK, nf), dtype=np.float64)
        bufs = [np.empty((_BLOCK, width), dtype=np.float64) for _ in range(2)]
        for start in range(0, n, _BLOCK):
            m = min(_BLOCK, n - start)
            f_, x_ = feat[:m], x[:m]
            _features_all(self.fs, self.istate, w, nf, t, *cols, side, start, f_, x_)
            h = x_
            # a non-finite row (an absurd input) is recomputed below and answered -2; its
            # NaN/inf through the products is expected, not worth a warning
            with np.errstate(invalid="ignore", over="ignore"):
                for k, (mat, bias) in enumerate(layers):
                    h = np.matmul(h, mat, out=bufs[k % 2][:m, :mat.shape[1]])
                    h += bias
                    if k < len(layers) - 1:
                        if relu:
                            np.maximum(h, 0.0, out=h)
                        else:
                            np.tanh(h, out=h)
            block = out[start:start + m]
            redo = _argmax_or_redo(f_, h, block, _TIE_MARGIN)
            if len(redo):  # compiled on the first near-tie: most arrays never need it
                rows(w, self.buf, f_, x_, redo, block, h)
                self.redone += len(redo)
            if start + m == n and (not len(redo) or redo[-1] != m - 1):
                # the buffer as after the last tick: its features, standardised features and
                # logits (the batched sums: equal to step()'s within float64 rounding)
                a0, lo = self._kernel.buf_layout
                self.buf[:nf] = f_[m - 1]
                self.buf[a0:a0 + nf] = x_[m - 1]
                self.buf[lo:lo + h.shape[1]] = h[m - 1]

    def reset(self) -> None:
        """Forget the feature history and the hidden state (a new session)."""
        self.fs[:], self.istate[:] = new_state()
        self.buf[:] = 0.0
