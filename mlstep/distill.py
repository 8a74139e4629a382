"""Knowledge distillation: soft targets with temperature, hidden-state matching, and a student
initialised from the teacher's layers (Hinton et al. 2015; DistilBERT, Sanh et al. 2019).

The loss (DESIGN §3)::

    distillation_loss = (1 - α) · CE(student, labels) + α · T² · KL(softmax(teacher/T) ‖ softmax(student/T))

* The KL is averaged over **rows** (``reduction="batchmean"``): the per-row sum over classes, divided
  by the number of rows. ``reduction="mean"`` would also divide by the number of classes C, which
  silently shrinks the soft term C-fold (C = 30,522 for BERT's vocabulary).
* The gradient of the softened KL w.r.t. a student logit is ``(p_s - p_t) / T``, and for large T
  ``p_s - p_t ≈ (z_s - z_t) / (C·T)``, so it shrinks like 1/T²; multiplying by T² keeps the soft
  term's weight against the hard term roughly the same whatever temperature is chosen.
* The hard cross-entropy is taken at T = 1: the labels are one-hot, there is nothing to soften.

Shape legend:
    b  batch            n  sequence positions      C  classes (or vocabulary size V)
    r  rows (examples, or token positions)         m  masked positions (MLM targets)
    d  hidden width (d_s student, d_t teacher)
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mlstep.bert import BertConfig, BertModel

__all__ = [
    "init_embeddings_by_projection",
    "distillation_loss",
    "soft_target_loss",
    "hidden_state_loss",
    "HiddenProjection",
    "student_config",
    "default_layer_map",
    "init_student_from_teacher",
    "InitReport",
    "distillation_step_fn",
    "mlm_distillation_step_fn",
]

IGNORE_INDEX = -100  # label of rows/positions without a target (PyTorch's and HF's convention)


# --- losses ---------------------------------------------------------------------------------------

def _as_float(x: Tensor) -> Tensor:
    """Softmax/KL in at least float32: bf16 logits from autocast lose the small probabilities."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _check_logits(student_logits: Tensor, teacher_logits: Tensor) -> None:
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
    if student_logits.dim() < 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must have the same shape (rows..., classes) with at "
            "least 2 dimensions; for MLM gather both at the same masked positions"
        )


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """The distillation term alone: ``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, batchmean.

    Args:
        student_logits: ``(..., C)``; every leading position is one row (e.g. ``(b, C)`` or ``(m, V)``).
        teacher_logits: same shape. **Detached** here: no gradient ever reaches the teacher.
        temperature: T > 0; larger T softens both distributions and exposes the teacher's
            "dark knowledge" (how similar it finds the wrong classes).

    Returns:
        A scalar: the KL summed over classes, averaged over rows, times T². 0 for zero rows.
    """
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    s = rearrange(_as_float(student_logits), "... c -> (...) c")  # (r, C)
    t = rearrange(_as_float(teacher_logits.detach()), "... c -> (...) c").to(s.dtype)  # (r, C)
    if s.shape[0] == 0:
        return s.sum() * 0.0  # no rows: 0 with a graph, not NaN
    log_p_s = F.log_softmax(s / temperature, dim=-1)  # (r, C)
    log_p_t = F.log_softmax(t / temperature, dim=-1)  # (r, C)
    # batchmean: sum over everything / r (the number of rows), i.e. the mean per-row KL
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _hard_loss(student_logits: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """Cross-entropy at T = 1, mean over rows whose label is not ``ignore_index`` (0 if none)."""
    C = student_logits.shape[-1]
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class ids, got dtype {labels.dtype}")
    if labels.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"labels {tuple(labels.shape)} must have the logits' shape without the class "
            f"dimension, {tuple(student_logits.shape[:-1])}"
        )
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= C))
    if bad.any():
        raise ValueError(f"labels must be in [0, {C}) or ignore_index={ignore_index}, got "
                         f"{sorted(set(labels[bad].tolist()))[:5]}")
    s = rearrange(_as_float(student_logits), "... c -> (...) c")  # (r, C)
    y = labels.reshape(-1).long()  # (r,)
    # sum / count instead of reduction="mean": a batch with no labelled row gives 0, not NaN
    total = F.cross_entropy(s, y, ignore_index=ignore_index, reduction="sum")
    return total / (y != ignore_index).sum().clamp(min=1)


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1] (the weight of the soft term), got {alpha!r}")


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """``(1 - α)·CE(student, labels) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))``.

    Args:
        student_logits: ``(..., C)``: ``(b, C)`` for classification, ``(m, V)`` for MLM at masked
            positions; every leading position is one row.
        teacher_logits: same shape; **detached** inside, so the teacher is never trained by this
            loss even if its logits were computed with gradients.
        labels: ``student_logits.shape[:-1]`` integer class ids, or None. Rows labelled
            ``ignore_index`` are left out of the CE (mean over labelled rows; 0 if there are none)
            but the KL still covers **every** row. ``None`` (an unlabeled transfer set) gives the
            soft term alone: ``alpha`` is then treated as 1 (``alpha=0``, hard only, is an error).
        temperature: T > 0, applied to the soft term only (CE is at T = 1).
        alpha: weight of the soft term in [0, 1]; 0 = plain CE, 1 = soft targets only.
        ignore_index: label value of rows without a hard target.

    Returns:
        A scalar loss (float32 at least, also for bf16 logits).
    """
    _check_alpha(alpha)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)  # validates shapes and T
    if labels is None:
        if alpha == 0:
            raise ValueError("alpha=0 asks for the hard-label loss only, but labels is None")
        return soft
    hard = _hard_loss(student_logits, labels, ignore_index)
    return (1.0 - alpha) * hard + alpha * soft


class HiddenProjection(nn.Module):
    """A linear map from the student's width to the teacher's, for hidden-state losses when they
    differ. It is trained with the student, so register it **on the student**
    (``student.hidden_projection = HiddenProjection(64, 128)``): the optimizer only updates the
    parameters of the model it is given."""

    def __init__(self, d_student: int, d_teacher: int, bias: bool = True):
        super().__init__()
        self.d_student, self.d_teacher = d_student, d_teacher
        self.proj = nn.Linear(d_student, d_teacher, bias=bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """``(..., d_s)`` → ``(..., d_t)``."""
        return self.proj(hidden)


def hidden_state_loss(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    kind: str = "cosine",
    projection: nn.Module | None = None,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """How far the student's hidden states are from the teacher's, averaged over real tokens.

    Args:
        student_hidden: ``(..., d_s)``, e.g. ``(b, n, d_s)``.
        teacher_hidden: ``(..., d_t)`` with the same leading shape; detached inside.
        kind: ``"cosine"``: ``1 - cos(s, t)`` per token (DistilBERT's cosine-embedding loss; only
            the direction matters), in [0, 2]; ``"mse"``: mean squared error per feature.
        projection: applied to the student's states first (needed when ``d_s != d_t``), e.g. a
            :class:`HiddenProjection`.
        attention_mask: optional ``student_hidden.shape[:-1]`` with 1 = real token, 0 = padding;
            padding positions are excluded from the average.

    Returns:
        A scalar: the per-token loss averaged over real tokens (0 when there are none).
    """
    if kind not in ("cosine", "mse"):
        raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")
    s = student_hidden if projection is None else projection(student_hidden)  # (..., d_t)
    t = teacher_hidden.detach()
    if s.shape[:-1] != t.shape[:-1] or s.shape[-1] != t.shape[-1]:
        hint = "" if projection is not None else " (pass projection=HiddenProjection(d_s, d_t) when widths differ)"
        raise ValueError(
            f"student hidden {tuple(student_hidden.shape)}"
            f"{'' if projection is None else f' projected to {tuple(s.shape)}'} does not match "
            f"teacher hidden {tuple(teacher_hidden.shape)}{hint}"
        )
    s = _as_float(s)
    t = _as_float(t).to(s.dtype)
    if kind == "cosine":
        per_token = 1.0 - F.cosine_similarity(s, t, dim=-1)  # (...)
    else:
        per_token = (s - t).pow(2).mean(dim=-1)  # (...)
    if attention_mask is None:
        return per_token.mean() if per_token.numel() else per_token.sum() * 0.0
    if attention_mask.shape != per_token.shape:
        raise ValueError(f"attention_mask must have the hidden states' leading shape "
                         f"{tuple(per_token.shape)}, got {tuple(attention_mask.shape)}")
    keep = attention_mask.to(per_token.dtype)  # (...) 1 = real, 0 = padding
    return (per_token * keep).sum() / keep.sum().clamp(min=1)


# --- a student from the teacher -------------------------------------------------------------------

def student_config(
    teacher_config: BertConfig, num_layers: int | None = None, hidden_size: int | None = None, **changes: Any
) -> BertConfig:
    """The teacher's config with fewer layers (and optionally a narrower width).

    Args:
        teacher_config: the teacher's :class:`~mlstep.BertConfig`.
        num_layers: student depth; default half the teacher's (at least 1), as DistilBERT.
        hidden_size: student width; default the teacher's (needed to copy its weights). When it
            changes, ``intermediate_size`` is scaled by the same ratio unless given.
        changes: any other :class:`BertConfig` field (``num_heads``, ``dropout``, ...).

    Returns:
        A new :class:`BertConfig`.
    """
    if not isinstance(teacher_config, BertConfig):
        raise TypeError(f"teacher_config must be a mlstep.BertConfig, got {type(teacher_config).__name__}")
    fields: dict[str, Any] = {
        "num_layers": max(1, teacher_config.num_layers // 2) if num_layers is None else num_layers,
        "hidden_size": teacher_config.hidden_size if hidden_size is None else hidden_size,
    }
    if fields["hidden_size"] != teacher_config.hidden_size and "intermediate_size" not in changes:
        ratio = teacher_config.intermediate_size / teacher_config.hidden_size  # 4 in BERT
        fields["intermediate_size"] = max(1, round(ratio * fields["hidden_size"]))
    return teacher_config.replace(**fields, **changes)


def default_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Which teacher layer initialises each student layer: evenly spaced, first and last included.

    ``round(i · (L_t - 1) / (L_s - 1))``: 12 → 6 gives ``[0, 2, 4, 7, 9, 11]``, exactly the layers
    DistilBERT's extraction script copies; 4 → 2 gives ``[0, 3]``; a 1-layer student gets the
    first layer (its input is the embeddings, as in the teacher).
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"a student needs 1 to teacher_layers={teacher_layers} layers, got {student_layers}")
    if student_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [math.floor(i * step + 0.5) for i in range(student_layers)]  # round half up, not to even


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _bert_of(model: nn.Module, role: str) -> BertModel:
    model = _unwrap(model)
    bert = model if isinstance(model, BertModel) else getattr(model, "bert", None)
    if not isinstance(bert, BertModel):
        raise TypeError(f"the {role} must be a mlstep.BertModel or have one as .bert, got {type(model).__name__}")
    return bert


class InitReport(NamedTuple):
    """What :func:`init_student_from_teacher` did (state-dict keys of the student)."""

    copied: tuple[str, ...]  # student tensors now equal to a teacher tensor
    skipped: tuple[str, ...]  # head tensors outside .bert left as they were (absent or other shape)
    layer_map: tuple[int, ...]  # teacher layer copied into each student layer


_LAYER_KEY = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")


@torch.no_grad()
@torch.no_grad()
def init_embeddings_by_projection(student: nn.Module, teacher: nn.Module) -> Tensor:
    """Initialise a *narrower* student's embeddings from the teacher's, by PCA projection.

    When widths match, :func:`init_student_from_teacher` copies tensors. A narrower student cannot
    take the teacher's ``d_t``-wide embeddings, but it can take their projection onto the ``d_s``
    directions in which the teacher's word embeddings vary most (principal components): the best
    ``d_s``-dimensional linear summary of what pretraining stored in them, e.g. that "splendid" sits
    near "lovely". Token, position and segment embeddings are summed in one space, so the same
    projection ``P`` (``d_t × d_s``, orthonormal columns) is applied to all three.

    Returns:
        ``P``; the student's tables become ``teacher_table @ P``.
    """
    s_emb, t_emb = _bert_of(student, "student").embeddings, _bert_of(teacher, "teacher").embeddings
    d_s, d_t = s_emb.word_embeddings.weight.shape[1], t_emb.word_embeddings.weight.shape[1]
    if d_s > d_t:
        raise ValueError(f"the student is wider than the teacher ({d_s} > {d_t}): nothing to project")
    names = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    bad = [f"{n}: student {tuple(getattr(s_emb, n).weight.shape)} vs teacher {tuple(getattr(t_emb, n).weight.shape)}"
           for n in names if getattr(s_emb, n).weight.shape[0] > getattr(t_emb, n).weight.shape[0]]
    if bad:
        raise ValueError("the student's embedding tables have more rows than the teacher's: " + "; ".join(bad))
    words = t_emb.word_embeddings.weight.float()  # (V, d_t)
    _, _, vh = torch.linalg.svd(words - words.mean(0), full_matrices=False)  # rows of vh: principal directions
    projection = vh[:d_s].T.contiguous()  # (d_t, d_s)
    for name in names:
        target = getattr(s_emb, name).weight
        target.copy_((getattr(t_emb, name).weight.float() @ projection)[: target.shape[0]].to(target.dtype))
    return projection


def init_student_from_teacher(
    student: nn.Module, teacher: nn.Module, layer_map: Sequence[int] | None = None
) -> InitReport:
    """Copy the teacher's embeddings, chosen layers, pooler and matching heads into the student.

    Works on :class:`~mlstep.BertModel`, :class:`~mlstep.BertForPreTraining` and any model with a
    ``.bert`` (e.g. a sequence classifier). Inside the BERT: embeddings, student layer ``i`` ←
    teacher layer ``layer_map[i]``, the pre-LN final LayerNorm, and the pooler; a shape mismatch
    there (a narrower student) is a ValueError naming every mismatched tensor. Outside ``.bert``
    (heads): a parameter is copied when the teacher has the same name and shape, else skipped.

    Args:
        student, teacher: the two models, of the same kind.
        layer_map: ``student num_layers`` teacher layer indices; default :func:`default_layer_map`.

    Returns:
        :class:`InitReport` ``(copied, skipped, layer_map)``.
    """
    s_bert, t_bert = _bert_of(student, "student"), _bert_of(teacher, "teacher")
    L_s, L_t = len(s_bert.encoder.layers), len(t_bert.encoder.layers)
    layer_map = default_layer_map(L_t, L_s) if layer_map is None else list(layer_map)
    if len(layer_map) != L_s or not all(isinstance(i, int) and 0 <= i < L_t for i in layer_map):
        raise ValueError(f"layer_map must list {L_s} teacher layer indices in [0, {L_t}) (one per "
                         f"student layer), got {layer_map}")
    for field in ("pre_norm", "num_heads"):  # same shapes, but a different function: refuse
        s_val, t_val = getattr(s_bert.config, field), getattr(t_bert.config, field)
        if s_val != t_val:
            raise ValueError(f"student {field}={s_val} differs from teacher {field}={t_val}: copied "
                             "layers would not compute what they computed in the teacher")

    s_sd, t_sd = s_bert.state_dict(), t_bert.state_dict()
    pairs, mismatched = [], []
    for key, tensor in s_sd.items():
        match = _LAYER_KEY.match(key)
        source = f"encoder.layers.{layer_map[int(match[1])]}.{match[2]}" if match else key
        if source not in t_sd:
            raise ValueError(f"the teacher's BERT has no tensor {source!r} for the student's {key!r}")
        if t_sd[source].shape != tensor.shape:
            mismatched.append(f"{key}: student {tuple(tensor.shape)} vs teacher {source} {tuple(t_sd[source].shape)}")
        pairs.append((key, source))
    if mismatched:
        raise ValueError(
            "cannot copy the teacher into a student of another width; mismatched shapes:\n  "
            + "\n  ".join(mismatched[:10]) + ("\n  ..." if len(mismatched) > 10 else "")
            + "\n(use student_config(teacher_config, num_layers=...) with the teacher's hidden_size, "
            "or train a narrower student from scratch with a HiddenProjection)"
        )
    prefix = "" if _unwrap(student) is s_bert else "bert."
    for key, source in pairs:
        s_sd[key].copy_(t_sd[source])  # state_dict tensors share storage with the parameters
    copied = [prefix + key for key, _ in pairs]

    skipped = []
    s_outer, t_outer = _unwrap(student), _unwrap(teacher)
    if s_outer is not s_bert:
        s_full, t_full = s_outer.state_dict(), t_outer.state_dict()
        for key, tensor in s_full.items():
            if key.startswith("bert."):
                continue
            if key in t_full and t_full[key].shape == tensor.shape:
                tensor.copy_(t_full[key])  # e.g. the tied MLM decoder: same values again, harmless
                copied.append(key)
            else:
                skipped.append(key)
    return InitReport(tuple(copied), tuple(skipped), tuple(layer_map))


# --- step functions for mlstep.train --------------------------------------------------------------

@contextlib.contextmanager
def _capture_hidden(model: nn.Module, enabled: bool) -> Iterator[list[Tensor]]:
    """Collect the BERT inside ``model``'s hidden states during a forward pass, as
    ``BertModel(..., output_hidden_states=True)`` returns them (embeddings, then each layer; the
    last one after the pre-LN final LayerNorm), whatever head sits on top of it."""
    states: list[Tensor] = []
    if not enabled:
        yield states
        return
    bert = _bert_of(model, "model")
    save = lambda _module, _inputs, out: states.append(out)  # noqa: E731
    handles = [bert.embeddings.register_forward_hook(save)]
    handles += [layer.register_forward_hook(save) for layer in bert.encoder.layers]
    if bert.encoder.final_norm is not None:
        handles.append(bert.encoder.final_norm.register_forward_hook(
            lambda _m, _i, out: states.__setitem__(-1, out)))
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


def _model_inputs(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise TypeError("a distillation batch must be a dict with 'input_ids' (and optionally "
                        f"'token_type_ids', 'attention_mask', labels), got {type(batch).__name__}")
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask") if batch.get(k) is not None}


def _logits_of(output: Any, who: str) -> Tensor:
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if not isinstance(logits, Tensor):
        raise TypeError(f"the {who}'s output ({type(output).__name__}) has no .logits tensor; for "
                        "BertForPreTraining models use mlm_distillation_step_fn")
    return logits


class _Distiller:
    """What both step functions share: the teacher in eval mode on the batch's device, the
    hidden-state term, and checking that a projection will be trained."""

    def __init__(self, teacher: nn.Module, temperature: float, alpha: float, hidden_weight: float,
                 hidden_kind: str, hidden_pairs: Sequence[tuple[int, int]] | None, projection: nn.Module | None):
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
        _check_temperature(temperature)
        _check_alpha(alpha)
        if not hidden_weight >= 0:
            raise ValueError(f"hidden_weight must be >= 0, got {hidden_weight!r}")
        if hidden_kind not in ("cosine", "mse"):
            raise ValueError(f"hidden_kind must be 'cosine' or 'mse', got {hidden_kind!r}")
        self.teacher, self.T, self.alpha = teacher, temperature, alpha
        self.hidden_weight, self.hidden_kind, self.projection = hidden_weight, hidden_kind, projection
        self.hidden_pairs = [(-1, -1)] if hidden_pairs is None else [tuple(p) for p in hidden_pairs]
        self._checked_projection = False

    def run_teacher(self, inputs: dict[str, Tensor], **extra: Tensor) -> tuple[Any, list[Tensor]]:
        device = inputs["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)  # mlstep.train moves only the student
        self.teacher.eval()  # no dropout: the targets must not be noisy
        with torch.no_grad(), _capture_hidden(self.teacher, self.hidden_weight > 0) as states:
            out = self.teacher(**inputs, **extra)
        return out, states

    def hidden_term(self, student: nn.Module, s_states: list[Tensor], t_states: list[Tensor],
                    mask: Tensor | None) -> Tensor:
        if self.projection is not None and not self._checked_projection:
            owned = {id(p) for p in student.parameters()}
            if not all(id(p) in owned for p in self.projection.parameters()):
                raise ValueError("the projection's parameters are not in the student, so the optimizer "
                                 "would never train them: register it first, e.g. "
                                 "student.hidden_projection = projection")
            self._checked_projection = True
        total = 0.0
        for i_s, i_t in self.hidden_pairs:
            total = total + hidden_state_loss(s_states[i_s], t_states[i_t], self.hidden_kind,
                                              self.projection, mask)
        return total / len(self.hidden_pairs)

    def combine(self, student: nn.Module, s_logits: Tensor, t_logits: Tensor, labels: Tensor | None,
                s_states: list[Tensor], t_states: list[Tensor], mask: Tensor | None
                ) -> tuple[Tensor, dict[str, float]]:
        soft = soft_target_loss(s_logits, t_logits, self.T)
        if labels is None:  # unlabeled transfer set: soft targets only
            if self.alpha == 0:
                raise ValueError("alpha=0 (hard labels only) but the batch has no labels")
            loss, hard = soft, None
        else:
            hard = _hard_loss(s_logits, labels, IGNORE_INDEX)
            loss = (1.0 - self.alpha) * hard + self.alpha * soft
        parts = {"soft": soft.item(), "hard": 0.0 if hard is None else hard.item()}
        if self.hidden_weight > 0:
            hidden = self.hidden_term(student, s_states, t_states, mask)
            loss = loss + self.hidden_weight * hidden
            parts["hidden"] = hidden.item()
        return loss, parts


def distillation_step_fn(
    teacher: nn.Module,
    temperature: float = 2.0,
    alpha: float = 0.5,
    hidden_weight: float = 0.0,
    *,
    hidden_kind: str = "cosine",
    hidden_pairs: Sequence[tuple[int, int]] | None = None,
    projection: nn.Module | None = None,
) -> Callable[[nn.Module, Mapping[str, Any]], tuple[Tensor, dict[str, float]]]:
    """A ``step_fn(student, batch)`` for :func:`mlstep.train` that distils a classifier.

    Each call runs the teacher on the same batch under ``torch.no_grad()`` in eval mode (moved to
    the batch's device if needed), runs the student (in whatever mode the loop set), and returns
    ``(loss, {"soft", "hard", ["hidden"]})``. Both models are called as
    ``model(input_ids=..., token_type_ids=..., attention_mask=...)`` (keys present in the batch)
    and must return logits ``(b, C)`` or an object with ``.logits``. Token-classification logits
    ``(b, n, C)`` (labels ``(b, n)``, −100 = no target) are distilled at real tokens only.

    Args:
        teacher: the trained teacher (never updated).
        temperature, alpha: as in :func:`distillation_loss`. A batch **without** ``"labels"`` (an
            unlabeled transfer set) gets the soft term alone.
        hidden_weight: weight of the hidden-state loss added to the total (0 = off). Both models
            need a BERT (themselves or ``.bert``); their hidden states are captured with hooks.
        hidden_kind: ``"cosine"`` (DistilBERT) or ``"mse"``, see :func:`hidden_state_loss`.
        hidden_pairs: ``(student index, teacher index)`` into the ``L + 1`` hidden states
            (0 = embeddings); default ``[(-1, -1)]``, the last layer's output as in DistilBERT.
            With several pairs the losses are averaged. Padding is excluded via attention_mask.
        projection: maps student → teacher width (:class:`HiddenProjection`); must be registered
            on the student so that the optimizer trains it (checked on the first call).

    Returns:
        ``step_fn(student, batch) -> (loss, dict_of_floats)``; batch is a dict with
        ``input_ids``, optional ``token_type_ids``, ``attention_mask`` and ``labels`` ``(b,)``.
    """
    d = _Distiller(teacher, temperature, alpha, hidden_weight, hidden_kind, hidden_pairs, projection)

    def step_fn(student: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        inputs = _model_inputs(batch)
        if "label" in batch and "labels" not in batch:
            raise ValueError("the batch has 'label' but distillation reads 'labels'; rename the key")
        t_out, t_states = d.run_teacher(inputs)
        with _capture_hidden(student, d.hidden_weight > 0) as s_states:
            s_out = student(**inputs)
        s_logits, t_logits = _logits_of(s_out, "student"), _logits_of(t_out, "teacher")
        labels, mask = batch.get("labels"), inputs.get("attention_mask")
        if s_logits.dim() == 3 and mask is not None and s_logits.shape[:2] == mask.shape:
            # token classification (b, n, C): distil at real tokens only, not at padding
            real = mask.bool()  # (b, n)
            s_logits, t_logits = s_logits[real], t_logits[real]  # (r, C)
            labels = None if labels is None else labels[real]  # (r,)
        return d.combine(student, s_logits, t_logits, labels, s_states, t_states, mask)

    return step_fn


def mlm_distillation_step_fn(
    teacher: nn.Module,
    temperature: float = 2.0,
    alpha: float = 0.5,
    hidden_weight: float = 0.0,
    *,
    hidden_kind: str = "cosine",
    hidden_pairs: Sequence[tuple[int, int]] | None = None,
    projection: nn.Module | None = None,
) -> Callable[[nn.Module, Mapping[str, Any]], tuple[Tensor, dict[str, float]]]:
    """A ``step_fn(student, batch)`` for pretraining a small BERT the DistilBERT way.

    Teacher and student are :class:`~mlstep.BertForPreTraining` with the same vocabulary. With
    ``"mlm_labels"`` in the batch (``(b, n)``, −100 = not masked; from :func:`mlstep.mask_tokens`)
    both are called with them, so both project only the ``m`` masked positions: the soft term is
    over the vocabulary at those ``(m, V)`` rows, the hard term is the student's MLM cross-entropy.
    Without ``mlm_labels`` the soft term covers every real token ``(r, V)`` (DistilBERT's default)
    and there is no hard term. NSP is not used (DistilBERT dropped it). The hidden-state term
    (``hidden_weight > 0``) is over all real tokens. Other arguments as in
    :func:`distillation_step_fn`.

    Returns:
        ``step_fn(student, batch) -> (loss, {"soft", "hard", ["hidden"]})``.
    """
    d = _Distiller(teacher, temperature, alpha, hidden_weight, hidden_kind, hidden_pairs, projection)

    def step_fn(student: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        inputs = _model_inputs(batch)
        labels = batch.get("mlm_labels")
        extra = {} if labels is None else {"mlm_labels": labels}
        t_out, t_states = d.run_teacher(inputs, **extra)
        with _capture_hidden(student, d.hidden_weight > 0) as s_states:
            s_out = student(**inputs, **extra)
        s_logits, t_logits = s_out.mlm_logits, t_out.mlm_logits  # (m, V) with labels, else (b, n, V)
        mask = inputs.get("attention_mask")
        if labels is None:
            real = torch.ones_like(inputs["input_ids"], dtype=torch.bool) if mask is None else mask.bool()
            s_logits, t_logits = s_logits[real], t_logits[real]  # (b, n, V) -> (r, V)
            hard_labels = None
        else:
            hard_labels = labels[labels != IGNORE_INDEX]  # (m,), the gather order of the models
        return d.combine(student, s_logits, t_logits, hard_labels, s_states, t_states, mask)

    return step_fn
