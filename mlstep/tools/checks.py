"""Checks of what a user passes in, shared by every public entry point so that they read alike.

Each raises a TypeError (a value of the wrong kind) or a ValueError (the right kind, a wrong
value) whose message names the argument, says what was expected and what came, and, where it
helps, what to do. Internal functions trust their callers and check nothing.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

__all__ = [
    # any argument by what it must be (types, rules on numbers, choices); a config's fields
    "check_args", "check_values", "check_fields", "check_type", "check_callable", "check_keys",
    # numbers
    "check_int", "check_number", "check_probability", "check_index", "is_int", "is_number",
    # tensors
    "check_tensor", "check_floating", "check_shape", "check_finite", "check_logits", "check_ids",
    "check_mask", "check_width", "check_rows", "check_sampling", "check_generator",
    # lists
    "check_id_list", "check_strings", "is_iterable",
]


def is_int(x: object, low: int = 1) -> bool:
    """``x`` is an integer (not a bool) >= ``low``."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= low


def is_number(x: object, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
              high_open: bool = True) -> bool:
    """``x`` is a real number (not a bool, not NaN) in the interval, each end open or closed."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or math.isnan(x):
        return False
    return (x > low if low_open else x >= low) and (x < high if high_open else x <= high)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_int(name: str, x: object, low: int = 1, *, optional: bool = False) -> None:
    """``x`` is an integer (not a bool) and at least ``low`` (or None, when ``optional``)."""
    if not is_int(x, low) and not (optional and x is None):
        expected = "a positive integer" if low == 1 else f"an integer >= {low}"
        kind = ValueError if isinstance(x, numbers.Integral) and not isinstance(x, bool) else TypeError
        raise kind(f"{name} must be {expected}, got {x!r}")


def check_number(name: str, x: object, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = True, optional: bool = False) -> None:
    """``x`` is a real number (not a bool, not NaN) in the interval from ``low`` to ``high``, each
    end open or closed (the default ``[low, high)``: inf passes only where the interval ends in ``inf]``),
    or None when ``optional``."""
    if not is_number(x, low, high, low_open=low_open, high_open=high_open) and not (optional and x is None):
        kind = ValueError if isinstance(x, numbers.Real) and not isinstance(x, bool) else TypeError
        raise kind(f"{name} must be a number in {_interval(low, high, low_open, high_open)}, got {x!r}")


def check_probability(name: str, p: float, *, closed: bool = False) -> None:
    """``p`` lies in ``[0, 1)``, or in ``[0, 1]`` when ``closed``."""
    if not is_number(p, 0.0, 1.0, high_open=not closed):
        kind = ValueError if isinstance(p, numbers.Real) and not isinstance(p, bool) else TypeError
        raise kind(f"{name} must be in [0, 1{']' if closed else ')'}, got {p!r}")


def check_type(name: str, x: object, types: type | tuple[type, ...], expected: str) -> None:
    """``x`` is an instance of ``types``; ``expected`` says it in words, e.g. ``"a mlstep.BertConfig"``."""
    if not isinstance(x, types):
        raise TypeError(f"{name} must be {expected}, got {type(x).__name__}")


_RULES = {  # a rule on a number (not a bool, not NaN, finite) -> (its test, the rule in words)
    "int > 0": (lambda x: is_int(x, 1), "an integer > 0"),
    "int >= 0": (lambda x: is_int(x, 0), "an integer >= 0"),
    "int >= 2": (lambda x: is_int(x, 2), "an integer >= 2"),
    "> 0": (lambda x: is_number(x, 0, low_open=True), "a number > 0"),
    ">= 0": (lambda x: is_number(x, 0), "a number >= 0"),
    "in [0, 1]": (lambda x: is_number(x, 0, 1, high_open=False), "a number in [0, 1]"),
    "in [0, 1)": (lambda x: is_number(x, 0, 1), "a number in [0, 1)"),
    "in (0, 1]": (lambda x: is_number(x, 0, 1, low_open=True, high_open=False), "a number in (0, 1]"),
}


def check_args(**arguments: tuple) -> None:
    """Each ``name=(value, spec, ...)``: ``value`` meets one of the specs, each a type, a predicate
    such as ``callable``, None, a tuple of the allowed values, or a rule on numbers (a key of
    ``_RULES``: "int > 0", "> 0", "in [0, 1)", ...), e.g. ``check_args(model=(model, nn.Module),
    lr=(lr, "> 0"), eval_fn=(eval_fn, callable, None))``. A TypeError names a value of the wrong
    kind, a ValueError a number or choice out of range."""
    for name, (value, *specs) in arguments.items():
        if not any(_meets(value, spec) for spec in specs):
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            ranged = any(isinstance(s, str) for s in specs) and number or any(isinstance(s, tuple) for s in specs)
            got = repr(value) if number or isinstance(value, str) or value is None else type(value).__name__
            raise (ValueError if ranged else TypeError)(f"{name} must be {' or '.join(map(_describe, specs))}, got {got}")


def _meets(value: object, spec: object) -> bool:
    if spec is None or isinstance(spec, (str, tuple)):
        return value is None if spec is None else _RULES[spec][0](value) if isinstance(spec, str) else value in spec
    return isinstance(value, spec) if isinstance(spec, type) else bool(spec(value))


def _describe(spec: object) -> str:
    """A spec of :func:`check_args` in words: "an nn.Module", "a torch.Tensor", "callable", "> 0"."""
    if spec is None or isinstance(spec, (str, tuple)):
        return "None" if spec is None else _RULES[spec][1] if isinstance(spec, str) else f"one of {spec}"
    if not isinstance(spec, type):
        return getattr(spec, "__name__", str(spec)).removeprefix("is_")
    module = spec.__module__
    prefix = "nn." if module.startswith("torch.nn") else "torch." if module.startswith("torch") else \
        "mlstep." if module.startswith("mlstep") else ""
    name = prefix + {"Mapping": "dict", "PathLike": "os.PathLike"}.get(spec.__name__, spec.__name__)
    return f"{'an' if name[0] in 'aeioAEIO' or name.startswith('nn.') else 'a'} {name}"


def check_callable(name: str, f: object, expected: str = "a function") -> None:
    """``f`` can be called; ``expected`` says what it should be, e.g. ``"a function (model, batch) -> loss"``."""
    if not callable(f):
        raise TypeError(f"{name} must be {expected} (a callable), got {type(f).__name__}")


def check_generator(name: str, g: object, *, cpu: bool = False) -> None:
    """``g`` is None or a ``torch.Generator`` (on the CPU when ``cpu``)."""
    if g is not None and not isinstance(g, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(g).__name__}; "
                        "make one with torch.Generator().manual_seed(seed)")
    if cpu and g is not None and g.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU torch.Generator, got one on {g.device}")


def check_tensor(name: str, x: object, *, dims: int | tuple[int, ...] | None = None,
                 floating: bool = False, what: str = "") -> None:
    """``x`` is a tensor, with ``dims`` dimensions (one of them, for a tuple) and, when ``floating``,
    a floating-point dtype; ``what`` describes the shape in the message, e.g. ``"(batch, seq_len)"``."""
    what = f" {what}" if what else ""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{what}, got {type(x).__name__}; convert it with torch.tensor(...)")
    if floating and not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}; convert it with .float()")
    allowed = dims if isinstance(dims, tuple) else (dims,)
    if dims is not None and x.dim() not in allowed:
        raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions{what}, got shape {tuple(x.shape)}")


def check_floating(**tensors: object) -> None:
    """Each argument is a floating-point tensor, all of one dtype: ``check_floating(q=q, k=k, v=v)``."""
    for name, x in tensors.items():
        check_tensor(name, x, floating=True)
    if len({x.dtype for x in tensors.values()}) > 1:
        got = ", ".join(f"{name} {x.dtype}" for name, x in tensors.items())
        raise TypeError(f"{', '.join(tensors)} must have one dtype, got {got}; convert them with .to(dtype)")


def check_shape(name: str, x: object, shape: tuple, what: str = "", *, dtype: torch.dtype | None = None) -> None:
    """``x`` is a tensor (of ``dtype``) of exactly ``shape``; ``what`` says where the shape comes from."""
    check_tensor(name, x)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} must be a {'boolean' if dtype == torch.bool else dtype} tensor, got {x.dtype}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}{f' {what}' if what else ''}, got {tuple(x.shape)}")


def check_finite(name: str, x: Tensor, *, neg_inf: bool = False) -> None:
    """The tensor ``x`` holds no NaN and no inf (an integer tensor is finite); with ``neg_inf``, −inf
    is allowed (a logit ruled out)."""
    check_tensor(name, x)
    if not x.dtype.is_floating_point:
        return
    bad = x.isnan() | (x == math.inf)
    if not neg_inf:
        bad |= x == -math.inf
    if bad.any():
        raise ValueError(f"{name} must be finite{' or -inf' if neg_inf else ''}, got {int(bad.sum())} values "
                         f"like {x[bad][0].item()}: check what computed them (a diverged model, a division by 0)")


def check_logits(name: str, x: object, *, dims: int | None = None, neg_inf: bool = False) -> None:
    """``x`` is a floating tensor of scores (with ``dims`` dimensions) without NaN or inf; with
    ``neg_inf``, −inf rules a class out, but every row (the last dimension) keeps a finite score."""
    check_tensor(name, x, dims=dims, floating=True)
    check_finite(name, x, neg_inf=neg_inf)
    if neg_inf and x.numel() and not (x > -math.inf).any(-1).all():
        raise ValueError(f"{name} has a row that is all -inf: no class is left to choose")


def check_sampling(logits: object, temperature: object, top_k: object, top_p: object, generator: object) -> None:
    """What drawing a next token takes (:mod:`mlstep.generation`): ``logits (B, V)`` (None: not
    checked), ``temperature >= 0``, ``top_k >= 1`` and ``top_p`` in (0, 1] (each None: off), a generator."""
    if logits is not None:
        check_logits("logits", logits, dims=2, neg_inf=True)
    check_number("temperature", temperature, 0)
    check_int("top_k", top_k, optional=True)
    check_number("top_p", top_p, 0, 1, low_open=True, high_open=False, optional=True)
    check_generator("generator", generator)


def check_ids(name: str, x: Tensor, high: int, bound: str, *, shape: tuple | None = None,
              ignore: int | None = None) -> None:
    """``x`` is an integer tensor (of ``shape``) whose values lie in ``[0, high)``, or equal ``ignore``.

    ``bound`` names ``high`` in the message, e.g. ``"vocab_size"``.
    """
    check_int(bound, high)
    if not isinstance(x, Tensor) or x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    bad = (x < 0) | (x >= high)
    if ignore is not None:
        bad &= x != ignore
    if bad.any():
        allowed = f"[0, {bound}={high})" + ("" if ignore is None else f" or {ignore}")
        raise ValueError(f"{name} must be in {allowed}, got {sorted(set(x[bad].tolist()))[:5]}")


def check_id_list(name: str, values: Iterable, high: int | None = None, bound: str = "") -> list[int]:
    """``values``, an iterable of Python (or numpy) integers in ``[0, high)`` (``>= 0`` when ``high``
    is None), as a list."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be integer ids, got {type(values).__name__}")
    values = list(values)
    if not all(is_int(i, 0) and (high is None or i < high) for i in values):
        allowed = ">= 0" if high is None else f"in [0, {bound}={high})"
        raise ValueError(f"{name} must hold integer ids {allowed}, got {values[:5]}")
    return [int(i) for i in values]


def check_strings(name: str, texts: object) -> list[str]:
    """``texts``, a list (or any iterable but a single str) of str, as a list."""
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        got = "a single str; wrap it in a list" if isinstance(texts, str) else type(texts).__name__
        raise TypeError(f"{name} must be a list of str, got {got}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name} must be a list of str, got {type(t).__name__} at index {i}")
    return texts


def is_iterable(x: object) -> bool:
    """``x`` can be looped over: an iterable, or a sequence-like object such as a torch Dataset."""
    return not isinstance(x, (str, bytes)) and (isinstance(x, Iterable) or hasattr(x, "__getitem__"))


def check_keys(name: str, mapping: object, keys: tuple[str, ...]) -> None:
    """``mapping`` is a dict (any Mapping) that holds every one of ``keys``."""
    check_type(name, mapping, Mapping, f"a dict with {', '.join(keys)}")
    if missing := [k for k in keys if k not in mapping]:
        raise ValueError(f"{name} must hold {', '.join(keys)}; it lacks {', '.join(missing)} (it has {list(mapping)})")


def check_index(name: str, x: object) -> int:
    """``x`` as a Python int: an int, a numpy integer or a one-element integer tensor."""
    try:
        return operator.index(x)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {x!r}") from None


def check_fields(config: object) -> None:
    """Every field of the dataclass ``config`` holds the kind its annotation names: ``int`` a
    positive integer, ``float`` a number >= 0, ``bool`` True or False, ``str`` a str (``X | None``:
    None too). Other annotations are left to the class."""
    cls = type(config).__name__
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), str(f.type)
        if value is None and kind.endswith("| None"):
            continue
        kind, where = kind.removesuffix(" | None"), f"{cls}.{f.name}"
        if kind == "int":
            check_int(where, value)
        elif kind == "float":
            check_number(where, value, 0.0)
        elif kind in ("bool", "str"):
            check_type(where, value, bool if kind == "bool" else str, "True or False" if kind == "bool" else "a str")


def check_values(config: object, **specs: object) -> None:
    """Refuse every field of ``config`` that meets none of its specs (those of :func:`check_args`;
    several as a list), all in one message."""
    specs = {name: spec if isinstance(spec, list) else [spec] for name, spec in specs.items()}
    if bad := [name for name, spec in specs.items() if not any(_meets(getattr(config, name), s) for s in spec)]:
        got = ", ".join(f"{name}={getattr(config, name)!r}" for name in bad)
        wanted = "; ".join(f"{name}: {' or '.join(map(_describe, specs[name]))}" for name in bad)
        raise ValueError(f"{type(config).__name__} got invalid values: {got}; expected {wanted}")


def check_mask(mask: Tensor, scores_shape: tuple) -> None:
    """An attention mask is boolean (True = may attend) and broadcasts to the scores ``(..., T, S)``."""
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got {mask.dtype}; "
                        "convert a 0/1 mask with mask.bool()")
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the attention "
                         f"scores {tuple(scores_shape)} (..., queries, keys)") from None


def check_width(name: str, x: Tensor, width: int, *, dims: int | None = 3) -> None:
    """``x`` is a batch of sequences of vectors ``(B, T, width)`` (``dims=None``: any ``(..., width)``)."""
    check_tensor(name, x)
    if (x.dim() != dims if dims is not None else x.dim() == 0) or x.shape[-1] != width:
        shape = "batch, positions" if dims == 3 else "..."
        raise ValueError(f"{name} must be ({shape}, hidden_size={width}), got {tuple(x.shape)}")


def check_rows(name: str, attention_mask: Tensor, shape: tuple) -> None:
    """A ``(B, T)`` 0/1 attention mask with at least one real token (1) in every row."""
    check_tensor(name, attention_mask)
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (1 = real token, 0 = padding), "
                         f"got {tuple(attention_mask.shape)}")
    if attention_mask.dtype != torch.bool and ((attention_mask != 0) & (attention_mask != 1)).any():
        raise ValueError(f"{name} must hold only 0 (padding) and 1 (real token)")
    if not attention_mask.bool().any(dim=1).all():
        raise ValueError(f"{name} has a row with no real token (all zeros)")

