"""Checks for chapter 06: freezing the encoder (linear probe), and a LoRA-wrapped Linear layer.

The freezing check builds tiny random classifiers, runs the learner's function on one and
:func:`mlstep.finetune.freeze_encoder` on a deep copy, and compares ``requires_grad`` parameter by
parameter; when they differ it names the part left trainable (embeddings, some layers, the
pooler) or frozen by mistake (the head). It also checks that the parameters are the same objects
with the same values (frozen, not replaced or re-initialised).

The LoRA layer is checked as a whole: what it freezes, which parameters it adds and their
shapes, that it starts as the base layer (B = 0), that with random A and B its output is
``base(x) + (α/r)·x Aᵀ Bᵀ`` (the reference is :class:`mlstep.lora.LoRALinear` with the same A and B
copied in), that gradients reach A and B, and that the base layer it was given is wrapped, not
copied, and left unchanged.

Shape legend:
    ... any leading dimensions     i  in_features     o  out_features     r  rank
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mlstep.bert import BertConfig
from mlstep.exercises._core import _call, _one_line, _passed, _randn, _register
from mlstep.finetune import BertForSequenceClassification, freeze_encoder

__all__ = ["check_freeze_encoder", "check_lora_linear"]


# --- freezing the encoder (linear probe) ----------------------------------------------------------

# (num_layers, pre_norm, num_labels, pooling): 2 layers so "only some layers frozen" shows; pre-LN
# adds a final LayerNorm inside model.bert; mean pooling leaves the pooler unused but still encoder.
_FREEZE_CASES = ((2, False, 3, "cls"), (1, True, 2, "cls"), (2, True, 4, "mean"))


def _encoder_part(name: str) -> str:
    """Which part of the encoder a parameter name inside ``model.bert`` belongs to."""
    parts = name.split(".")
    if parts[1] == "encoder" and len(parts) > 3 and parts[2] == "layers":
        return f"layer {parts[3]}"
    return {"embeddings": "embeddings", "pooler": "pooler"}.get(parts[1], ".".join(parts[1:-1]))


def _freeze_setup(num_layers: int, pre_norm: bool, num_labels: int, pooling: str,
                  seed: int) -> tuple[BertForSequenceClassification, dict[str, bool]]:
    """A random classifier, and ``requires_grad`` of each parameter as :func:`freeze_encoder` sets it."""
    torch.manual_seed(seed)  # the global RNG is restored by the caller (_register)
    config = BertConfig(vocab_size=50, hidden_size=16, num_layers=num_layers, num_heads=2,
                        intermediate_size=32, max_position=16, pre_norm=pre_norm)
    model = BertForSequenceClassification(config, num_labels, pooling=pooling)
    reference = freeze_encoder(copy.deepcopy(model))
    return model, {name: p.requires_grad for name, p in reference.named_parameters()}


def _replaced_problem(model: nn.Module, result: Any, before: dict[str, Tensor],
                      values: dict[str, Tensor]) -> str | None:
    """Another model returned, parameters replaced or values changed; None if the model is intact."""
    if isinstance(result, nn.Module) and not any(result is m for m in model.modules()):
        return ("you returned a different model: freeze the parameters of the model you were given, "
                "in place, then return it (or nothing)")
    after = dict(model.named_parameters())
    replaced = [name for name in before if after.get(name) is not before[name]]
    if replaced or set(after) != set(before):
        which = replaced[0] if replaced else sorted(set(after) ^ set(before))[0]
        return (f"replaced parameters ({which}): set requires_grad_(False) on the model's own parameters "
                "instead of assigning new tensors or modules")
    changed = [name for name, t in model.state_dict().items()
               if name not in values or not torch.equal(t, values[name])]
    if changed:
        return (f"changed values ({changed[0]}): freezing only sets requires_grad; the weights must stay "
                "exactly as they were (no re-initialisation, no .zero_() or .data = ...)")
    return None


def _trainable_encoder_problem(encoder_trainable: list[str], num_layers: int) -> str:
    """Which part of the encoder was left trainable, in words."""
    parts = list(dict.fromkeys(_encoder_part(name) for name in encoder_trainable))  # in model order
    layers = [part for part in parts if part.startswith("layer ")]
    if parts == ["pooler"]:
        return ("pooler left trainable (bert.pooler.dense): in this course's linear probe the pooler is "
                "part of the encoder and is frozen too; freeze every parameter of model.bert")
    if parts == ["embeddings"]:
        return ("embeddings left trainable (bert.embeddings: word, position, segment, LayerNorm); "
                "they are part of the encoder: freeze every parameter of model.bert")
    if layers and len(layers) < num_layers:
        return (f"only some layers frozen: {', '.join(layers)} (of {num_layers}) still trainable; freeze "
                "every layer (loop over model.bert.parameters(), not a hand-picked list)")
    return (f"encoder left partly trainable: {', '.join(parts)} still trainable; freeze every "
            "parameter of model.bert (embeddings, all layers, pooler)")


def _requires_grad_problem(model: BertForSequenceClassification, want: dict[str, bool],
                           num_layers: int) -> str | None:
    """``requires_grad`` wrong somewhere: nothing frozen, the head frozen, the encoder partly trainable."""
    after = dict(model.named_parameters())
    frozen = {name for name, p in after.items() if not p.requires_grad}
    head = [name for name in after if not name.startswith("bert.")]
    encoder_trainable = [name for name in after if name.startswith("bert.") and name not in frozen]
    if not frozen:
        hint = (" (.eval() only switches dropout off; it does not freeze anything)"
                if not model.bert.training else "")
        return ("nothing frozen: every parameter still has requires_grad=True; call "
                f"p.requires_grad_(False) for every p in model.bert.parameters(){hint}")
    if any(name in frozen for name in head):
        first = next(name for name in head if name in frozen)
        everything = " (everything is frozen)" if len(frozen) == len(after) else ""
        return (f"head frozen too: {first} has requires_grad=False{everything}; freeze only model.bert, "
                "the classifier head must stay trainable (it is what the linear probe trains)")
    if encoder_trainable:
        return _trainable_encoder_problem(encoder_trainable, num_layers)
    differs = [name for name, p in after.items() if p.requires_grad != want[name]]
    if differs:  # cannot happen if the encoder/head split matches freeze_encoder's; kept as a net
        return (f"{differs[0]} has requires_grad={after[differs[0]].requires_grad}, expected "
                f"{want[differs[0]]} (as mlstep.freeze_encoder sets it)")
    return None


def _return_problem(model: nn.Module, result: Any) -> str | None:
    """The freezing is right but ``fn`` returned something other than the model or None."""
    if isinstance(result, nn.Module) and result is not model:  # e.g. model.bert.requires_grad_(False)
        return (f"you returned a part of the model ({type(result).__name__}); the freezing is right, but "
                "return the whole model (or nothing)")
    if result is not None and result is not model:
        return (f"expected your function to return the model (or None), got {type(result).__name__}; the "
                "freezing itself is right")
    return None


def _freeze_problem(fn: Callable[..., Any], num_layers: int, pre_norm: bool, num_labels: int,
                    pooling: str, seed: int) -> str | None:
    """Everything checked on one model; the problem found, or None."""
    model, want = _freeze_setup(num_layers, pre_norm, num_labels, pooling, seed)
    before = {name: p for name, p in model.named_parameters()}
    values = {name: t.detach().clone() for name, t in model.state_dict().items()}
    result, err = _call(fn, model)
    if err:
        return err
    return (_replaced_problem(model, result, before, values)
            or _requires_grad_problem(model, want, num_layers)
            or _return_problem(model, result))


@_register
def check_freeze_encoder(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(model)`` on a :class:`mlstep.finetune.BertForSequenceClassification`: a linear probe.

    Every parameter of ``model.bert`` (embeddings, all layers, pooler) must get
    ``requires_grad=False``; the head (everything outside ``model.bert``) must stay trainable;
    parameters are not replaced and keep their values; ``fn`` returns the model or None. The
    reference is :func:`mlstep.finetune.freeze_encoder` on a copy of the same model.

    Returns:
        True if every case passes (a ✅/❌ line is printed either way).
    """
    n = len(_FREEZE_CASES)
    for k, (num_layers, pre_norm, num_labels, pooling) in enumerate(_FREEZE_CASES, start=1):
        problem = _freeze_problem(fn, num_layers, pre_norm, num_labels, pooling, seed=900 + k)
        if problem:
            label = (f"{num_layers}-layer {'pre-LN' if pre_norm else 'post-LN'} BERT, {num_labels} labels, "
                     f"pooling {pooling!r}")
            return False, f"{_one_line(problem)} (case {k}/{n}: {label})"
    return True, _passed(n)


# --- LoRA ------------------------------------------------------------------------------------------

# (in_features, out_features, bias, rank, alpha): (r, i) never equals (o, r), so A and B can be
# told apart by shape; α/r is never 1, so a missing scaling shows.
_LORA_CASES = ((12, 7, True, 3, 6.0), (5, 9, True, 2, 16.0), (8, 8, True, 4, 2.0), (6, 10, False, 1, 3.0))


def _reference(weight: Tensor, bias: Tensor | None, A: Tensor, B: Tensor, rank: int, alpha: float,
               x: Tensor) -> Tensor:
    """``base(x) + (α/r)·x Aᵀ Bᵀ``, by :class:`mlstep.lora.LoRALinear` when it is there."""
    try:
        from mlstep.lora import LoRALinear
    except ImportError:  # the formula itself
        return x @ weight.T + (0 if bias is None else bias) + (x @ A.T @ B.T) * (alpha / rank)
    base = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        base.weight.copy_(weight)
        if bias is not None:
            base.bias.copy_(bias)
        ref = LoRALinear(base, rank=rank, alpha=alpha)
        ref.lora_A.copy_(A)
        ref.lora_B.copy_(B)
        return ref(x)


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=1e-5, rtol=1e-4))


def _base_changed(base: nn.Linear, W0: Tensor, b0: Tensor | None) -> str | None:
    if torch.equal(base.weight, W0) and (b0 is None or torch.equal(base.bias, b0)):
        return None
    return ("the base layer's weights changed: leave base.weight and base.bias as they are (only A and "
            "B train; merging B A into the weight belongs after training, not in forward)")


def _lora_base(g: torch.Generator, i_f: int, o_f: int, bias: bool) -> nn.Linear:
    """The base layer to wrap, its weights from the check's generator, not from the global RNG."""
    base = nn.Linear(i_f, o_f, bias=bias)
    with torch.no_grad():
        base.weight.copy_(_randn(g, o_f, i_f) * 0.5)
        if bias:
            base.bias.copy_(_randn(g, o_f))
    return base


def _structure_problem(module: Any, base: nn.Linear, bias: bool, rank: int, i_f: int, o_f: int) -> str | None:
    """Not a module, the base not wrapped or not frozen, or not exactly A and B trainable; or None."""
    if not isinstance(module, nn.Module):
        return f"expected an nn.Module, got {type(module).__name__}"
    params = dict(module.named_parameters())
    if not any(p is base.weight for p in params.values()):
        return ("the base layer is not inside your module: wrap the `base` you were given (e.g. "
                "self.base = base) instead of copying it into a new layer")
    if base.weight.requires_grad or (bias and base.bias.requires_grad):
        which = "weight" if base.weight.requires_grad else "bias"
        return (f"base not frozen: base.{which}.requires_grad is True; freeze the base layer "
                "(p.requires_grad_(False) for p in base.parameters()) so only A and B train")
    trainable = {name: p for name, p in params.items() if p.requires_grad}
    shapes = sorted(tuple(p.shape) for p in trainable.values())
    if shapes != sorted([(rank, i_f), (o_f, rank)]):
        if shapes == sorted([(i_f, rank), (rank, o_f)]):
            return (f"wrong shapes: A must be (rank, in_features) = {(rank, i_f)} and B (out_features, rank) "
                    f"= {(o_f, rank)}, so that B @ A has the shape of base.weight {(o_f, i_f)}")
        found = ", ".join(f"{name} {tuple(p.shape)}" for name, p in trainable.items()) or "none"
        return (f"expected exactly 2 trainable tensors, A {(rank, i_f)} and B {(o_f, rank)} "
                f"({rank * (i_f + o_f)} parameters, registered as nn.Parameter); found: {found}")
    return None


def _lora_factors(module: nn.Module, rank: int, i_f: int, o_f: int) -> tuple[Tensor, Tensor]:
    """A ``(rank, in)`` and B ``(out, rank)``: the module's trainable parameters, told apart by shape."""
    trainable = [p for _, p in module.named_parameters() if p.requires_grad]
    A = next(p for p in trainable if tuple(p.shape) == (rank, i_f))
    B = next(p for p in trainable if tuple(p.shape) == (o_f, rank) and p is not A)
    return A, B


def _init_problem(A: Tensor, B: Tensor) -> str | None:
    """B must start at zeros, A must not."""
    if (B != 0).any():
        return ("B not zero-initialised: B must start at zeros so the wrapped layer computes exactly "
                "base(x) at first (A random, B = 0)")
    if (A == 0).all():
        return ("A is zero-initialised: with A = B = 0 no gradient reaches either (∂L/∂B ∝ A); "
                "initialise A randomly (e.g. like a Linear weight) and B with zeros")
    return None


def _initial_output_problem(module: nn.Module, base: nn.Linear, W0: Tensor, b0: Tensor | None,
                            xs: list[Tensor]) -> str | None:
    """At initialisation (B = 0) the output must be exactly base(x), for every x."""
    with torch.no_grad():
        for x in xs:
            y0, err = _call(module, x.clone())
            if err or _base_changed(base, W0, b0):
                return err or _base_changed(base, W0, b0)
            want_y = x @ W0.T + (0 if b0 is None else b0)
            if not isinstance(y0, Tensor) or not _close(y0, want_y):
                what = (f"got {type(y0).__name__}" if not isinstance(y0, Tensor) else
                        f"shape {tuple(y0.shape)}" if y0.shape != want_y.shape else
                        f"max abs diff {(y0 - want_y).abs().max().item():.3g}")
                return f"at initialisation (B = 0) the output must equal base(x) exactly, for x {tuple(x.shape)} ({what})"
    return None


def _scaling_mistake(y: Tensor, x: Tensor, W0: Tensor, b0: Tensor | None, A: Tensor, B: Tensor,
                     rank: int, alpha: float) -> str | None:
    """Which typical mistake in the scaling or the base term gives ``y``, or None."""
    base_y, delta = x @ W0.T + (0 if b0 is None else b0), x @ A.T @ B.T  # (..., o) each
    for message, wrong in (
        ("scaling missing (alpha/rank): multiply the low-rank update by alpha / rank", base_y + delta),
        ("scaled by alpha instead of alpha/rank", base_y + delta * alpha),
        ("scaled by rank/alpha instead of alpha/rank", base_y + delta * (rank / alpha)),
        ("scaled by 1/rank: the scaling is alpha / rank", base_y + delta / rank),
        ("scaled by alpha // rank (integer division): use alpha / rank", base_y + delta * (alpha // rank)),
        ("the base output is missing: output = base(x) + (alpha/rank)·x Aᵀ Bᵀ", delta * (alpha / rank)),
    ):
        if _close(y, wrong):
            return f"{message} (with A, B set to random values, x {tuple(x.shape)})"
    return None


def _trained_output_problem(module: nn.Module, base: nn.Linear, W0: Tensor, b0: Tensor | None,
                            xs: list[Tensor], A: Tensor, B: Tensor, rank: int, alpha: float) -> str | None:
    """With A and B random (as after training) the output must be ``base(x) + (α/r)·x Aᵀ Bᵀ``."""
    with torch.no_grad():
        for x in xs:
            y, err = _call(module, x.clone())
            if err or _base_changed(base, W0, b0):
                return err or _base_changed(base, W0, b0)
            expected = _reference(W0, b0, A.detach(), B.detach(), rank, alpha, x)
            if isinstance(y, Tensor) and _close(y, expected):
                continue
            if not isinstance(y, Tensor) or y.shape != expected.shape:
                return f"output for x {tuple(x.shape)} should be a tensor {tuple(expected.shape)}, got " + (
                    type(y).__name__ if not isinstance(y, Tensor) else str(tuple(y.shape)))
            return _scaling_mistake(y, x, W0, b0, A, B, rank, alpha) or (
                f"with A, B set to random values the output is not base(x) + (alpha/rank)·x Aᵀ Bᵀ for x "
                f"{tuple(x.shape)} (max abs diff {(y - expected).abs().max().item():.3g})")
    return None


def _gradient_problem(module: nn.Module, x: Tensor, A: Tensor, B: Tensor) -> str | None:
    """A backward pass from the output must reach both A and B."""
    _, err = _call(lambda: module(x.clone()).square().sum().backward())
    if err:
        return err
    for name, p in (("A", A), ("B", B)):
        if p.grad is None or not p.grad.abs().sum() > 0:
            return (f"no gradient reaches {name}: use it in forward with differentiable torch operations "
                    "(no .data, .detach() or torch.no_grad())")
    return None


def _lora_case(fn: Callable[..., Any], g: torch.Generator, i_f: int, o_f: int, bias: bool, rank: int,
               alpha: float) -> str | None:
    """Everything checked on one layer; the problem found, or None."""
    base = _lora_base(g, i_f, o_f, bias)
    W0 = base.weight.detach().clone()
    b0 = base.bias.detach().clone() if bias else None
    xs = [_randn(g, 4, i_f), _randn(g, 2, 3, i_f)]  # (4, i) and (2, 3, i)

    module, err = _call(fn, base, rank, alpha)
    if err:
        hint = " — hint: base.bias is None for a Linear with bias=False" if not bias and "None" in err else ""
        return err + hint
    problem = _structure_problem(module, base, bias, rank, i_f, o_f)
    if problem:
        return problem
    A, B = _lora_factors(module, rank, i_f, o_f)
    problem = _init_problem(A, B) or _initial_output_problem(module, base, W0, b0, xs)
    if problem:
        return problem
    with torch.no_grad():
        A.copy_(_randn(g, rank, i_f))  # random A and B, as after some training
        B.copy_(_randn(g, o_f, rank))
    return (_trained_output_problem(module, base, W0, b0, xs, A, B, rank, alpha)
            or _gradient_problem(module, xs[0], A, B) or _base_changed(base, W0, b0))


@_register
def check_lora_linear(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(base: nn.Linear, rank, alpha) -> nn.Module``: a LoRA-wrapped layer.

    Its output is ``base(x) + (alpha/rank)·x Aᵀ Bᵀ`` with ``A (rank, in)`` random and ``B (out, rank)``
    zeros at first; the base weight and bias are frozen, and A and B are its only trainable
    parameters. The reference is :class:`mlstep.lora.LoRALinear` (the formula where it is absent).

    Returns:
        True if every case passes (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(707)
    n = len(_LORA_CASES)
    for k, (i_f, o_f, bias, rank, alpha) in enumerate(_LORA_CASES, start=1):
        problem = _lora_case(fn, g, i_f, o_f, bias, rank, alpha)
        if problem:
            label = f"nn.Linear({i_f}, {o_f}{'' if bias else ', bias=False'}), rank {rank}, alpha {alpha:g}"
            return False, f"{_one_line(problem)} (case {k}/{n}: {label})"
    return True, _passed(n)
