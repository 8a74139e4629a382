"""Knowledge distillation: soft targets with a temperature (Hinton et al., 2015), and a student
initialised from its teacher (DistilBERT, Sanh et al., 2019).

The loss::

    (1 - α) · CE(student, labels) + α · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

* The KL is averaged over rows (``reduction="batchmean"``). ``"mean"`` would also divide by the
  number of classes C and silently shrink the soft term C-fold (C = 30,522 for BERT's vocabulary).
* Its gradient with respect to a student logit shrinks like 1/T²; the T² factor keeps the soft
  term's weight against the hard one the same whatever the temperature.
* The hard cross-entropy is taken at T = 1: one-hot labels have nothing to soften.

Shapes follow the package legend; a "row" is one prediction (an example, or a token).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.bert import BertConfig
from mlstep.finetune import MODEL_INPUTS
from mlstep.tools.checks import check_args, check_ids, check_logits, is_int
from mlstep.tools.runtime import IGNORE_INDEX, unwrap_model
from mlstep.transformer import find_backbone

__all__ = ["distillation_loss", "soft_target_loss", "student_config", "default_layer_map",
           "init_student_from_teacher", "InitReport", "init_embeddings_by_projection",
           "distillation_step_fn"]


def _at_least_float32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 → float32; float64 stays


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, averaged over rows (every leading position).

    The teacher's logits are detached: no gradient ever reaches the teacher. Computed in float32
    at least (bf16 logits from autocast lose the small probabilities that carry the signal).
    """
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape or student_logits.dim() < 2:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must have one shape (rows..., classes)")
    check_args(temperature=(temperature, "> 0"))
    s = _at_least_float32(student_logits).flatten(0, -2) / temperature  # (rows, C)
    t = _at_least_float32(teacher_logits.detach()).flatten(0, -2).to(s.dtype) / temperature  # (rows, C)
    if s.shape[0] == 0:
        return s.sum() * 0.0  # no rows: 0 with a graph, not NaN
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None,
                      temperature: float = 2.0, alpha: float = 0.5) -> Tensor:
    """``(1 - α)·CE(student, labels) + α·soft_target_loss``, for logits ``(..., C)``.

    Rows labelled −100 (an unlabeled transfer set) get no hard term but keep the soft one; with
    ``labels=None`` the loss is the soft term alone (then ``alpha=0``, hard labels only, is an error).
    """
    check_args(alpha=(alpha, "in [0, 1]"))  # the weight of the soft term
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    if labels is None:
        if alpha == 0:
            raise ValueError("alpha=0 asks for the hard-label loss only, but there are no labels")
        return soft
    check_ids("labels", labels, student_logits.shape[-1], "classes", shape=student_logits.shape[:-1],
              ignore=IGNORE_INDEX)
    # a sum over the labelled rows / their number: a batch with none gives 0, not NaN
    hard = F.cross_entropy(_at_least_float32(student_logits).flatten(0, -2), labels.flatten(), reduction="sum")
    hard = hard / (labels != IGNORE_INDEX).sum().clamp(min=1)
    return (1.0 - alpha) * hard + alpha * soft


def distillation_step_fn(teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5
                         ) -> Callable[[nn.Module, Mapping[str, Any]], Tensor]:
    """A ``step_fn(student, batch)`` for :func:`mlstep.train` that distils a classifier.

    The teacher runs on the same batch in eval mode without gradients (moved to the batch's
    device). A batch without ``"labels"`` gets the soft term alone. Token-classification logits
    ``(B, T, C)`` are distilled at the real tokens of ``attention_mask``.
    """
    check_args(teacher=(teacher, nn.Module), temperature=(temperature, "> 0"), alpha=(alpha, "in [0, 1]"))

    def step_fn(student: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        teacher.to(batch["input_ids"].device).eval()
        with torch.no_grad():
            t_logits = teacher(**inputs).logits
        s_logits, labels = student(**inputs).logits, batch.get("labels")
        if s_logits.dim() == 3 and "attention_mask" in batch:  # tokens: the real ones only
            real = batch["attention_mask"].bool()  # (B, T)
            s_logits, t_logits = s_logits[real], t_logits[real]  # (M, C)
            labels = None if labels is None else labels[real]  # (M,)
        return distillation_loss(s_logits, t_logits, labels, temperature, alpha)

    return step_fn


def student_config(teacher_config: BertConfig, num_layers: int | None = None,
                   hidden_size: int | None = None, **changes: Any) -> BertConfig:
    """The teacher's config with fewer layers (default: half, as DistilBERT) and optionally a
    narrower width (the feed-forward width then shrinks in proportion unless given)."""
    check_args(teacher_config=(teacher_config, BertConfig), hidden_size=(hidden_size, int, None))
    fields = {"num_layers": max(1, teacher_config.num_layers // 2) if num_layers is None else num_layers}
    if hidden_size is not None and hidden_size != teacher_config.hidden_size:
        fields["hidden_size"] = hidden_size
        ratio = teacher_config.intermediate_size / teacher_config.hidden_size  # 4 in BERT
        fields["intermediate_size"] = max(1, round(ratio * hidden_size))
    return dataclasses.replace(teacher_config, **{**fields, **changes})


def default_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Which teacher layer initialises each student layer: evenly spaced, first and last included.

    12 → 6 gives ``[0, 2, 4, 7, 9, 11]``, the layers DistilBERT copies; a 1-layer student gets layer 0.
    """
    if not (is_int(teacher_layers) and is_int(student_layers) and student_layers <= teacher_layers):
        raise ValueError(f"student_layers must be 1 to teacher_layers={teacher_layers!r}, got {student_layers!r}")
    if student_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [math.floor(i * step + 0.5) for i in range(student_layers)]  # round half up


class InitReport(NamedTuple):
    copied: tuple[str, ...]  # student tensors now equal to a teacher tensor
    skipped: tuple[str, ...]  # head tensors outside the backbone with no match in the teacher
    layer_map: tuple[int, ...]  # the teacher layer copied into each student layer


@torch.no_grad()
def init_student_from_teacher(student: nn.Module, teacher: nn.Module,
                              layer_map: Sequence[int] | None = None) -> InitReport:
    """Copy the teacher's embeddings, the layers of ``layer_map`` (default: :func:`default_layer_map`),
    the final LayerNorm and the pooler into a student of the same width, and every head tensor
    whose name and shape match. A narrower student is a ValueError naming each mismatch."""
    student, teacher = unwrap_model(student), unwrap_model(teacher)
    s_net, t_net = find_backbone(student, "student").model, find_backbone(teacher, "teacher").model  # BertModel or GPT
    L_s, L_t = len(find_backbone(s_net).stack.layers), len(find_backbone(t_net).stack.layers)
    layer_map = default_layer_map(L_t, L_s) if layer_map is None else list(layer_map)
    if len(layer_map) != L_s or not all(0 <= i < L_t for i in layer_map):
        raise ValueError(f"layer_map must list {L_s} teacher layer indices in [0, {L_t}), got {layer_map}")
    for name in ("pre_norm", "num_heads"):  # same shapes, different function: refuse
        if getattr(s_net.config, name) != getattr(t_net.config, name):
            raise ValueError(f"student {name} differs from the teacher's: copied layers would compute "
                             "something else than they did in the teacher")
    copied = _copy_backbone(s_net, t_net, layer_map)
    prefix = next(name for name, m in student.named_modules() if m is s_net)  # "" or "bert", "gpt"
    copied, skipped = [f"{prefix}.{k}" if prefix else k for k in copied], []
    if prefix:  # the heads outside the backbone
        t_full = teacher.state_dict()
        for key, tensor in student.state_dict().items():
            if not key.startswith(prefix + "."):
                matches = key in t_full and t_full[key].shape == tensor.shape
                (copied if matches else skipped).append(key)
                if matches:
                    tensor.copy_(t_full[key])
    return InitReport(tuple(copied), tuple(skipped), tuple(layer_map))


def _copy_backbone(s_net: nn.Module, t_net: nn.Module, layer_map: Sequence[int]) -> list[str]:
    """Copy every tensor of the teacher's backbone into the student's, student layer ``i`` from
    teacher layer ``layer_map[i]``; the names copied. Shapes must match (else a ValueError)."""
    stack = next(name for name, m in s_net.named_modules() if m is find_backbone(s_net).stack)  # "encoder", "decoder"
    s_sd, t_sd = s_net.state_dict(), t_net.state_dict()
    source = {k: re.sub(rf"^{stack}\.layers\.(\d+)\.", lambda m: f"{stack}.layers.{layer_map[int(m[1])]}.", k)
              for k in s_sd}
    mismatched = [f"{k}: student {tuple(s_sd[k].shape)} vs teacher {tuple(t_sd[source[k]].shape)}"
                  for k in s_sd if s_sd[k].shape != t_sd[source[k]].shape]
    if mismatched:
        raise ValueError("cannot copy the teacher into a student of another width:\n  " + "\n  ".join(mismatched[:10])
                         + "\n(use student_config with the teacher's hidden_size, or init_embeddings_by_projection)")
    for k in s_sd:
        s_sd[k].copy_(t_sd[source[k]])  # state_dict tensors share storage with the parameters
    return list(s_sd)


@torch.no_grad()
def init_embeddings_by_projection(student: nn.Module, teacher: nn.Module) -> Tensor:
    """Give a *narrower* student the teacher's embeddings projected onto their ``D_s`` principal
    directions: the best ``D_s``-dimensional linear summary of what pretraining stored in them
    (e.g. that "splendid" sits near "lovely"). Token, position and segment embeddings are summed
    in one space, so the same projection ``P (D_t, D_s)`` applies to all three. Returns ``P``.
    """
    s_tables, t_tables = _embedding_tables(student, "student"), _embedding_tables(teacher, "teacher")
    if any(s.shape[1] > t.shape[1] or s.shape[0] > t.shape[0] for s, t in zip(s_tables, t_tables)):
        raise ValueError(f"the student's embeddings {[tuple(s.shape) for s in s_tables]} must not be wider "
                         f"or longer than the teacher's {[tuple(t.shape) for t in t_tables]}")
    words = t_tables[0].float()  # (V, D_t): the token embeddings
    _, _, vh = torch.linalg.svd(words - words.mean(0), full_matrices=False)  # rows: principal directions
    projection = vh[: s_tables[0].shape[1]].T.contiguous()  # (D_t, D_s)
    for s, t in zip(s_tables, t_tables):
        s.copy_((t.float() @ projection)[: s.shape[0]].to(s.dtype))
    return projection


def _embedding_tables(model: nn.Module, name: str) -> list[Tensor]:
    """The embedding tables of ``model``'s backbone, token embeddings first: BERT's word, position
    and segment tables, or a GPT's token and position tables."""
    return [m.weight for emb in find_backbone(model, name).embeddings for m in emb.modules() if isinstance(m, nn.Embedding)]
