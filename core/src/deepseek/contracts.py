"""What each kind of registered object must look like, checked when it is registered.

* model: ``builder(**config) -> torch.nn.Module``; every key of the default ``config`` is
  one of its parameters, and every parameter without a default is in ``config``;
* reader: ``reader(source, **options)``; one of kind ``encoded`` (a model server's decoder of
  the files a request sends) also takes the keywords ``dtype``, ``max_pixels``, ``reserve``
  and ``where``;
* metric: ``metric(predictions, references, **options) -> dict``;
* pipeline: ``pipeline(input=None, out_dir=PATH, quiet=False) -> PipelineResult``.

Callable options have contracts too: ``accepts(source)``, ``load_files(pred_path, ref_path)``,
``onnx_export(weights_path)``.

Plugins register most objects as :func:`deepseek.lazy.lazy_callable` targets
(``"deepseek.finance.ticks:read_csv"``), so that building a registry imports nothing heavy.
Their signatures are read from the module's source with :mod:`ast` (nothing is executed): a
module that does not exist, a name it does not define and a signature that breaks the
contract are errors at registration, like those of a plain function. Where the source does not
say (a class that inherits its ``__init__``, a name imported from elsewhere), the check is
made on the real object by ``deepseek plugins`` (:func:`check`, ``resolve=True``).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

P = inspect.Parameter
_POSITIONAL = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
_HAS_DEFAULT = object()  # a default the source gives (its value is not evaluated)


class Unknown(Exception):
    """The signature cannot be told without importing the object."""


# ------------------------------------------------------------------------ signatures
def _from_ast(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool) -> inspect.Signature:
    a = fn.args
    positional = [(x, P.POSITIONAL_ONLY) for x in a.posonlyargs] + \
                 [(x, P.POSITIONAL_OR_KEYWORD) for x in a.args]
    if drop_first and positional:
        positional = positional[1:]
    n_default = len(a.defaults)
    params = []
    for i, (arg, kind) in enumerate(positional):
        has = i >= len(positional) - n_default
        params.append(P(arg.arg, kind, default=_HAS_DEFAULT if has else P.empty))
    if a.vararg:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(P(arg.arg, P.KEYWORD_ONLY,
                        default=P.empty if default is None else _HAS_DEFAULT))
    if a.kwarg:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(params)


@lru_cache(maxsize=64)
def _module_tree(path: str, mtime: float) -> ast.Module:
    return ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)


def _names_in(node: ast.AST) -> set[str]:
    """Every name a statement binds, however nested (an ``if``/``try`` block at top level)."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
        elif isinstance(sub, ast.alias):
            names.add((sub.asname or sub.name).split(".")[0])
    return names


def _bound_names(tree: ast.Module) -> tuple[set[str], bool]:
    """Names a module binds at top level, and whether it may bind others (a star import, a
    module ``__getattr__``)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)  # not the names bound inside a function's body
        else:
            names |= _names_in(node)
    open_ended = "__getattr__" in names or "*" in names
    return names, open_ended


def static_signature(target: str) -> inspect.Signature:
    """The signature of ``"package.module:attr"`` read from the module's source.

    Raises ``ValueError`` when the module does not exist or does not define ``attr``, and
    :class:`Unknown` when the source does not tell (the object must be imported to know).
    """
    module, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"module {module!r} cannot be found ({exc})") from None
    if spec is None:
        raise ValueError(f"module {module!r} does not exist")
    origin = spec.origin
    if not origin or not origin.endswith(".py"):
        raise Unknown(target)
    tree = _module_tree(origin, Path(origin).stat().st_mtime)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == attr:
            return _from_ast(node, drop_first=False)
        if isinstance(node, ast.ClassDef) and node.name == attr:
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                         and n.name == "__init__"), None)
            if init is None:
                raise Unknown(target)  # inherited: only the class itself knows
            return _from_ast(init, drop_first=True)
    names, open_ended = _bound_names(tree)
    if attr in names or open_ended:
        raise Unknown(target)
    close = difflib.get_close_matches(attr, sorted(n for n in names if not n.startswith("_")),
                                      n=1, cutoff=0.6)
    raise ValueError(f"module {module!r} defines no {attr!r}"
                     + (f"; did you mean {close[0]!r}?" if close else ""))


def _resolve(module: str, attr: str) -> Any:
    """``module.attr`` imported; a module that needs a library this install leaves out (an
    edge install without PyTorch) cannot be checked here (:class:`Unknown`)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("deepseek"):
            raise Unknown(f"{module} needs {exc.name}") from None
        raise ValueError(f"module {module!r} does not import ({exc})") from None
    except ImportError as exc:
        if "None in sys.modules" in str(exc):  # a library blocked on purpose
            raise Unknown(f"{module}: {exc}") from None
        raise ValueError(f"module {module!r} does not import ({exc})") from None
    if not hasattr(mod, attr):
        names = sorted(n for n in dir(mod) if not n.startswith("_"))
        close = difflib.get_close_matches(attr, names, n=1, cutoff=0.6)
        raise ValueError(f"module {module!r} defines no {attr!r}"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
    return getattr(mod, attr)


def signature(obj: Any, resolve: bool = False) -> inspect.Signature:
    """The signature of a registered callable: inspected, or read from the source of a lazy
    target that is not imported yet (``resolve`` imports it instead)."""
    target = getattr(obj, "target", None)
    if isinstance(target, str) and ":" in target:
        module, _, attr = target.partition(":")
        if resolve or module in sys.modules:
            obj = _resolve(module, attr)
        else:
            return static_signature(target)
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        raise Unknown(repr(obj)) from None


# ------------------------------------------------------------------------ contracts
def _positional(sig: inspect.Signature, n: int) -> str | None:
    params = list(sig.parameters.values())
    if any(p.kind == P.VAR_POSITIONAL for p in params):
        takes = n
    else:
        takes = sum(p.kind in _POSITIONAL for p in params)
    required = [p.name for p in params if p.kind in _POSITIONAL and p.default is P.empty]
    kw_required = [p.name for p in params if p.kind == P.KEYWORD_ONLY and p.default is P.empty]
    if takes < n:
        return f"takes {takes} positional argument(s) {sig}, the contract passes {n}"
    if len(required) > n or kw_required:
        extra = required[n:] + kw_required
        return f"requires {', '.join(map(repr, extra))} {sig}, which the contract never passes"
    return None


def _keywords(sig: inspect.Signature, names: tuple[str, ...]) -> str | None:
    params = sig.parameters
    if any(p.kind == P.VAR_KEYWORD for p in params.values()):
        return None
    missing = [n for n in names if n not in params or params[n].kind == P.POSITIONAL_ONLY]
    if missing:
        return f"does not take the keyword(s) {', '.join(map(repr, missing))} {sig}"
    return None


def config_problem(sig: inspect.Signature, config: dict[str, Any], *,
                   also: tuple[str, ...] = ()) -> str | None:
    """Why ``config`` does not fit a builder's signature (unknown keys, with the closest
    parameter, or ``also``: other keyword names the caller takes), or None."""
    params = sig.parameters
    if any(p.kind == P.VAR_KEYWORD for p in params.values()):
        return None
    names = [n for n, p in params.items() if p.kind in (P.POSITIONAL_OR_KEYWORD,
                                                          P.KEYWORD_ONLY)]
    for key in config:
        if key not in names:
            close = difflib.get_close_matches(key, names + list(also), n=1, cutoff=0.6)
            return (f"unknown config key {key!r}"
                    + (f"; did you mean {close[0]!r}?" if close else "")
                    + f" (the builder takes: {', '.join(names) or 'nothing'})")
    return None


def _builder(sig: inspect.Signature, meta: dict[str, Any]) -> str | None:
    config = meta.get("config") or {}
    problem = config_problem(sig, config)
    if problem:
        return problem
    needed = [n for n, p in sig.parameters.items() if p.default is P.empty
              and p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY) and n not in config]
    if needed:
        return (f"the builder requires {', '.join(map(repr, needed))}, which the default config "
                "does not give (add them to config=)")
    if any(p.kind == P.POSITIONAL_ONLY and p.default is P.empty
           for p in sig.parameters.values()):
        return f"the builder takes required positional-only arguments {sig}; use keywords"
    return None


#: file suffixes many formats share: a reader that claims one must also give ``accepts=``, a
#: probe of the file's content, so that dispatch can tell its files from other readers' ones
GENERIC_SUFFIXES = frozenset({
    ".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson", ".log", ".dat", ".bin", ".raw",
    ".npy", ".npz", ".h5", ".hdf5", ".parquet", ".zip", ".tar", ".gz", ".zst", ".bz2", ".xz",
})


def is_generic(suffix: str) -> bool:
    """Whether every dotted part of ``suffix`` is generic (``.csv.gz`` is, ``.nii.gz`` not)."""
    parts = [p for p in suffix.lower().split(".") if p]
    return bool(parts) and all(f".{p}" in GENERIC_SUFFIXES for p in parts)


#: what the model server passes a reader of kind ``encoded`` beside the file's bytes
ENCODED_KEYWORDS = ("dtype", "max_pixels", "reserve", "where")


def _reader(sig: inspect.Signature, meta: dict[str, Any]) -> str | None:
    generic = [s for s in meta.get("suffixes") or () if is_generic(s)]
    if generic and meta.get("accepts") is None:
        return (f"it claims the generic suffix(es) {', '.join(generic)}, which many formats "
                "share: give accepts=PROBE (a check of the file's head) so that dispatch can "
                "tell its files from other readers' ones")
    if meta.get("kind") == "encoded":  # a server's decoder: deepseek.serving.encoded
        return _positional(sig, 1) or _keywords(sig, ENCODED_KEYWORDS)
    return _positional(sig, 1)


#: kind -> (what the object is, its check on a signature and the registration's options)
CONTRACTS: dict[str, tuple[str, Callable[[inspect.Signature, dict[str, Any]], str | None]]] = {
    "model": ("a model builder: builder(**config) -> torch.nn.Module", _builder),
    "reader": ("a reader: reader(source, **options)", _reader),
    "metric": ("a metric: metric(predictions, references, **options) -> dict",
               lambda s, m: _positional(s, 2)),
    "pipeline": ("a pipeline: pipeline(input=None, out_dir=PATH, quiet=False) -> "
                 "PipelineResult", lambda s, m: _keywords(s, ("input", "out_dir", "quiet"))),
    "step": ("a batch step factory: factory(**options) -> step(source) -> dict",
             lambda s, m: _positional(s, 0)),
}

#: callable registration options -> the number of positional arguments they are called with
OPTION_ARITY = {"accepts": 1, "load_files": 2, "onnx_export": 1, "summary": 1,
                "leave_out": 1}


def check(kind: str, obj: Any, meta: dict[str, Any], resolve: bool = False) -> str | None:
    """Why ``obj`` (and its callable options) break the contract of ``kind``, or None.

    Without ``resolve`` nothing is imported: lazy targets are read from their source, and
    what the source does not tell is left for the ``resolve=True`` pass."""
    contract = CONTRACTS.get(kind)
    if contract is None:
        return None
    what, rule = contract
    if not callable(obj):
        return f"must be {what}; got {type(obj).__name__} {obj!r:.60}"
    try:
        problem = rule(signature(obj, resolve), meta)
    except Unknown:
        problem = None
    except ValueError as exc:
        return f"{what}: {exc}"
    if problem:
        return f"{what}: {problem}"
    return _check_options(meta, resolve)


def _check_options(meta: dict[str, Any], resolve: bool) -> str | None:
    for option, arity in OPTION_ARITY.items():
        fn = meta.get(option)
        if fn is None or not callable(fn):
            continue
        try:
            problem = _positional(signature(fn, resolve), arity)
        except Unknown:
            continue
        except ValueError as exc:
            return f"option {option!r}: {exc}"
        if problem:
            return f"option {option!r} {problem}"
    return None
