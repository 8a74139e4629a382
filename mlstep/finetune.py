"""Fine-tuning BERT: task heads and training strategies as small composable functions.

Heads
    :class:`BertForSequenceClassification`: one label per sequence, read from the pooled [CLS]
    (``pooling="cls"``, as BERT) or from the mean of the real tokens (``pooling="mean"``).
    Sentence pairs (NLI, paraphrase) use the **same class**: encode ``[CLS] a [SEP] b [SEP]`` and
    pass ``token_type_ids`` (0 for a, 1 for b); :data:`BertForPairClassification` is an alias.
    :class:`BertForTokenClassification`: one label per token (tagging), with
    :func:`align_labels_to_pieces` / :func:`pieces_to_word_predictions` for word ↔ piece labels.

Strategies (each acts on a model in place and composes with the others and with ``mlstep.train``)
    :func:`freeze` / :func:`unfreeze` / :func:`freeze_encoder` (linear probe),
    :func:`apply_unfreezing` + :class:`GradualUnfreezer` (top layer first, one more per stage),
    :func:`layerwise_lr_groups` (discriminative learning rates), LoRA in :mod:`mlstep.lora`.
    Full fine-tuning is the default: every parameter trains.

Shape legend (used in every comment below):
    b  batch            n  sequence positions
    H  hidden size      C  number of labels
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlstep.bert import BertConfig, BertModel, _init_weights
from mlstep.utils import count_parameters

__all__ = [
    "ClassifierOutput",
    "BertForSequenceClassification",
    "BertForPairClassification",
    "BertForTokenClassification",
    "align_labels_to_pieces",
    "pieces_to_word_predictions",
    "classification_step",
    "find_bert",
    "head_parameters",
    "freeze",
    "unfreeze",
    "freeze_encoder",
    "trainable_parameters",
    "unfreezing_stages",
    "apply_unfreezing",
    "gradual_unfreezing_schedule",
    "GradualUnfreezer",
    "layerwise_lr_groups",
]

IGNORE_INDEX = -100  # label of positions that carry no loss (specials, continuation pieces, padding)
POOLINGS = ("cls", "mean")
_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")


class ClassifierOutput(NamedTuple):
    """What the classification heads return.

    Attributes:
        loss: None without labels; else the mean cross-entropy (over sequences, or over the
            labelled tokens: positions labelled −100 are ignored).
        logits: ``(b, C)`` for sequence classification, ``(b, n, C)`` for token classification.
    """

    loss: Tensor | None
    logits: Tensor


def _encoder(config_or_bert: BertConfig | BertModel) -> BertModel:
    if isinstance(config_or_bert, BertModel):
        return config_or_bert  # shared, not copied: use from_pretrained for a copy
    if isinstance(config_or_bert, BertConfig):
        return BertModel(config_or_bert)  # random init: training "from scratch"
    raise TypeError(
        f"expected a mlstep.BertConfig (random init) or a mlstep.BertModel, got "
        f"{type(config_or_bert).__name__}"
    )


def _check_labels(labels: Tensor, shape: torch.Size, num_labels: int, allow_ignore: bool) -> None:
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape != shape:
        raise ValueError(f"labels must have shape {tuple(shape)}, got {tuple(labels.shape)}")
    bad = (labels < 0) | (labels >= num_labels)
    if allow_ignore:
        bad &= labels != IGNORE_INDEX
    if bad.any():
        extra = " or -100 (ignored)" if allow_ignore else ""
        raise ValueError(
            f"labels must be in [0, num_labels={num_labels}){extra}, got "
            f"{sorted(set(labels[bad].tolist()))[:5]}"
        )


class _BertWithHead(nn.Module):
    """Shared plumbing: an encoder ``bert``, dropout and a Linear ``classifier``."""

    def __init__(self, config_or_bert: BertConfig | BertModel, num_labels: int, dropout: float):
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.bert = _encoder(config_or_bert)
        self.config = self.bert.config
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        _init_weights(self.classifier, self.config.initializer_range)

    @classmethod
    def from_pretrained(cls, pretrained_model: nn.Module, num_labels: int, *, copy_weights: bool = True,
                        **kwargs: Any):
        """A new task model on top of an in-memory pretrained encoder (no hub download).

        Args:
            pretrained_model: a :class:`mlstep.BertModel`, or any model holding one as ``.bert``
                (:class:`mlstep.BertForPreTraining`, another classifier, ``bert_from_hf(...)``).
            num_labels: number of classes ``C``.
            copy_weights: True (default) deep-copies the encoder, so fine-tuning leaves the
                pretrained model untouched (one pretrained model, many strategies to compare);
                False shares it.
            kwargs: the remaining constructor arguments (``dropout``, ``pooling``).

        Returns:
            The task model; its encoder gives exactly the pretrained encoder's outputs, its head is
            freshly initialised. Pretraining heads (MLM, NSP) are dropped; the pooler is kept.
        """
        bert = find_bert(pretrained_model)
        if copy_weights:
            bert = copy.deepcopy(bert)
        return cls(bert, num_labels, **kwargs)


class BertForSequenceClassification(_BertWithHead):
    """BERT with a linear classifier on a sequence summary.

    Also the sentence-pair classifier: pass ``[CLS] a [SEP] b [SEP]`` with ``token_type_ids``
    (0 = a, 1 = b); the segment embedding is what lets the model tell premise from hypothesis.

    Args:
        config_or_bert: a :class:`mlstep.BertConfig` (random init, i.e. from scratch) or a
            :class:`mlstep.BertModel` to use (shared); see :meth:`from_pretrained` for a copy.
        num_labels: number of classes ``C`` (≥ 2).
        dropout: dropout on the summary vector before the classifier (BERT: 0.1).
        pooling: ``"cls"`` = the encoder's pooled output ``tanh(dense(h[CLS]))`` (BERT's choice,
            and the pooler was pretrained by NSP); ``"mean"`` = the average of the real tokens'
            final hidden states (padding excluded; the pooler is unused). Mean pooling sees every
            token directly, which helped small models with negation (CALIBRATION pitfall 5).
    """

    def __init__(self, config_or_bert: BertConfig | BertModel, num_labels: int, dropout: float = 0.1,
                 pooling: str = "cls"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        super().__init__(config_or_bert, num_labels, dropout)
        self.pooling = pooling

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, labels: Tensor | None = None) -> ClassifierOutput:
        """Classify each sequence.

        Args:
            input_ids, token_type_ids, attention_mask: ``(b, n)``, as in :meth:`BertModel.forward`.
            labels: optional ``(b,)`` class ids in ``[0, C)``.

        Returns:
            :class:`ClassifierOutput` ``(loss or None, logits (b, C))``.
        """
        if labels is not None:
            _check_labels(labels, input_ids.shape[:1], self.num_labels, allow_ignore=False)
        hidden, pooled, _ = self.bert(input_ids, token_type_ids, attention_mask)  # (b,n,H), (b,H)
        if self.pooling == "mean":
            if attention_mask is None:
                pooled = hidden.mean(dim=1)  # (b, n, H) -> (b, H)
            else:
                w = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (b, n, 1): 1 = real token
                pooled = (hidden * w).sum(dim=1) / w.sum(dim=1)  # (b, H); each row has a real token
        logits = self.classifier(self.dropout(pooled))  # (b, C)
        loss = None if labels is None else F.cross_entropy(logits, labels.long())
        return ClassifierOutput(loss, logits)


BertForPairClassification = BertForSequenceClassification
"""Sentence-pair classification is sequence classification with ``token_type_ids``."""


class BertForTokenClassification(_BertWithHead):
    """BERT with a linear classifier at every position (tagging: entities, parts of speech).

    Words split into several pieces are labelled on their first piece only; the other pieces,
    the specials and the padding carry label −100 and no loss (see :func:`align_labels_to_pieces`).

    Args:
        config_or_bert, num_labels, dropout: as in :class:`BertForSequenceClassification`.
    """

    def __init__(self, config_or_bert: BertConfig | BertModel, num_labels: int, dropout: float = 0.1):
        super().__init__(config_or_bert, num_labels, dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, labels: Tensor | None = None) -> ClassifierOutput:
        """Tag every position.

        Args:
            input_ids, token_type_ids, attention_mask: ``(b, n)``, as in :meth:`BertModel.forward`.
            labels: optional ``(b, n)`` class ids in ``[0, C)``, −100 where no loss is wanted
                (give −100 at padding too). At least one position must be labelled.

        Returns:
            :class:`ClassifierOutput` ``(loss or None, logits (b, n, C))``; the loss is the mean
            over labelled positions (``F.cross_entropy(..., ignore_index=-100)``).
        """
        if labels is not None:
            _check_labels(labels, input_ids.shape, self.num_labels, allow_ignore=True)
            if not (labels != IGNORE_INDEX).any():
                raise ValueError("labels are all -100: no position to compute a loss on")
        hidden = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state  # (b, n, H)
        logits = self.classifier(self.dropout(hidden))  # (b, n, C)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten().long(),  # (b·n, C), (b·n,)
                                   ignore_index=IGNORE_INDEX)
        return ClassifierOutput(loss, logits)


# --- word-level labels ↔ piece-level labels ----------------------------------------------------

def align_labels_to_pieces(word_labels: Sequence[int], word_ids: Sequence[int | None],
                           label_all_pieces: bool = False) -> list[int]:
    """Piece-level labels for one encoded sentence (first-subword labelling).

    Args:
        word_labels: one label per word.
        word_ids: per piece, the index of its word, None for [CLS]/[SEP]/[PAD]
            (``Encoding.word_ids`` of :class:`mlstep.WordPieceTokenizer`; one segment).
        label_all_pieces: also give continuation pieces (``##ing``) their word's label.

    Returns:
        A list as long as ``word_ids``: the word's label on its first piece, −100 on specials
        and (unless ``label_all_pieces``) on continuation pieces.

    Example: words ``["playing", "golf"]`` with labels ``[3, 5]``, pieces
    ``[CLS] play ##ing golf [SEP]`` with ``word_ids [None, 0, 0, 1, None]`` → ``[-100, 3, -100, 5, -100]``.
    """
    labels, previous = [], None
    for wid in word_ids:
        if wid is None:
            labels.append(IGNORE_INDEX)
        elif not 0 <= wid < len(word_labels):
            raise ValueError(
                f"word_ids refers to word {wid} but there are {len(word_labels)} word labels"
            )
        elif wid != previous or label_all_pieces:
            labels.append(int(word_labels[wid]))
        else:
            labels.append(IGNORE_INDEX)  # a continuation piece of the same word
        previous = wid
    return labels


def pieces_to_word_predictions(pred_ids: Sequence[int] | Tensor, word_ids: Sequence[int | None]) -> list[int]:
    """Word-level predictions from piece-level ones: each word takes its first piece's prediction.

    Args:
        pred_ids: per piece, the predicted class (e.g. ``logits[i].argmax(-1)`` for one sentence).
        word_ids: as in :func:`align_labels_to_pieces`.

    Returns:
        One prediction per word, words in order ``0 .. max(word_ids)`` (truncated words are absent).
    """
    preds = pred_ids.tolist() if isinstance(pred_ids, Tensor) else list(pred_ids)
    if len(preds) != len(word_ids):
        raise ValueError(f"pred_ids has {len(preds)} entries for {len(word_ids)} word_ids")
    first: dict[int, int] = {}
    for pred, wid in zip(preds, word_ids, strict=True):
        if wid is not None and wid not in first:
            first[wid] = int(pred)
    return [first[w] for w in sorted(first)]


def classification_step(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """A ``step_fn`` for :func:`mlstep.train`: ``model(**batch)`` and its training accuracy.

    ``batch`` holds ``input_ids``, ``labels`` and optionally ``token_type_ids``/``attention_mask``;
    other keys (e.g. ``word_ids`` from ``encode_batch``) are ignored. Works for both heads (token
    accuracy counts labelled positions only).
    """
    out = model(**{k: batch[k] for k in _MODEL_INPUTS if k in batch})
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    accuracy = (out.logits.argmax(-1)[keep] == labels[keep]).float().mean().item()
    return out.loss, {"accuracy": accuracy}


# --- freezing -------------------------------------------------------------------------------------

def find_bert(model: nn.Module) -> BertModel:
    """The :class:`mlstep.BertModel` inside ``model`` (the model itself, its ``.bert``, or the first
    one among its submodules)."""
    if isinstance(model, BertModel):
        return model
    if isinstance(getattr(model, "bert", None), BertModel):
        return model.bert
    for module in model.modules():
        if isinstance(module, BertModel):
            return module
    raise TypeError(f"{type(model).__name__} holds no mlstep.BertModel (expected .bert or a BertModel)")


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The task head: every parameter of ``model`` that is not in its BertModel."""
    encoder = {id(p) for p in find_bert(model).parameters()}
    return [p for p in model.parameters() if id(p) not in encoder]


def freeze(module: nn.Module) -> nn.Module:
    """``requires_grad=False`` on every parameter of ``module``; returns it (for chaining).

    A frozen parameter gets no ``.grad``; AdamW skips parameters whose grad is None (no update,
    no weight decay), so an optimizer built over all parameters still leaves it untouched."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """``requires_grad=True`` on every parameter of ``module``; returns it."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def freeze_encoder(model: nn.Module, train_pooler: bool = False) -> nn.Module:
    """Linear probe: freeze the whole encoder (embeddings, every layer, the pooler), so only the
    task head trains. Returns ``model``.

    Args:
        model: a task model holding a BertModel (e.g. :class:`BertForSequenceClassification`).
        train_pooler: also train the pooler ``tanh(dense(h[CLS]))``. Off by default: the probe
            is then truly linear on features fixed by pretraining, so it measures what pretraining
            put into the representation, and its comparison with from-scratch training, LoRA or
            full fine-tuning is not confounded by an extra trainable hidden layer (with
            ``pooling="mean"`` the pooler is unused anyway). In our short trials a trainable
            pooler scored at most ~2 points higher, within the noise. On, the "probe" becomes a
            one-hidden-layer MLP over [CLS] (``H² + H`` more parameters).
    """
    freeze(find_bert(model))
    if train_pooler:
        unfreeze(find_bert(model).pooler)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad=True`` (tied weights counted once)."""
    return count_parameters(model, trainable_only=True)


# --- gradual unfreezing ---------------------------------------------------------------------------

def unfreezing_stages(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """The order in which gradual unfreezing wakes parameters up, top first.

    Returns ``L + 2`` named stages (``L`` encoder layers): ``("head", ...)`` = the task head
    (what :func:`freeze_encoder` trains); then ``("layer{L-1}", ...)`` down to ``("layer0", ...)``,
    where the top layer brings the modules above it (the pooler, the pre-LN final LayerNorm);
    last ``("embeddings", ...)``.
    """
    bert = find_bert(model)
    stages = [("head", head_parameters(model))]
    for i in reversed(range(len(bert.encoder.layers))):
        params = list(bert.encoder.layers[i].parameters())
        if i == len(bert.encoder.layers) - 1:
            params += list(bert.pooler.parameters())
            if bert.encoder.final_norm is not None:
                params += list(bert.encoder.final_norm.parameters())
        stages.append((f"layer{i}", params))
    stages.append(("embeddings", list(bert.embeddings.parameters())))
    return stages


def apply_unfreezing(model: nn.Module, stage: int) -> nn.Module:
    """Make exactly the parameters of stages ``0..stage`` trainable (see :func:`unfreezing_stages`).

    ``stage`` 0 = head only, ``k`` = head + top ``k`` layers, ``L + 1`` (or more) = everything.
    Returns ``model``.
    """
    if not isinstance(stage, int) or stage < 0:
        raise ValueError(f"stage must be a non-negative integer, got {stage!r}")
    freeze(model)
    for _, params in unfreezing_stages(model)[: stage + 1]:
        for p in params:
            p.requires_grad_(True)
    return model


def gradual_unfreezing_schedule(num_layers: int, epochs: int) -> list[int]:
    """The stage for each epoch: one more layer per epoch, embeddings last, then stay.

    ``gradual_unfreezing_schedule(2, 5) == [0, 1, 2, 3, 3]``.
    """
    if num_layers <= 0 or epochs <= 0:
        raise ValueError(f"num_layers and epochs must be positive, got {num_layers}, {epochs}")
    return [min(e, num_layers + 1) for e in range(epochs)]


class GradualUnfreezer:
    """Gradual unfreezing (ULMFiT) driven from inside a ``step_fn``, since the loop has no callbacks.

    Usage with :func:`mlstep.train`::

        unfreezer = GradualUnfreezer(model, steps_per_stage=len(loader))  # one stage per epoch
        train(model, loader, unfreezer.wrap(classification_step), config)

    The constructor makes **every** parameter trainable, so the optimizer that ``train`` builds
    afterwards holds them all; the wrapped ``step_fn`` then sets the stage before each step.
    Frozen parameters get no gradient, and AdamW leaves parameters without a gradient untouched,
    so waking a layer up later needs no new optimizer (its Adam moments start from zero then).

    In a plain loop: build the optimizer over ``model.parameters()`` after the constructor and
    call :meth:`update` before each step. Not meant to be combined with :func:`mlstep.apply_lora`
    (the constructor would unfreeze the adapted base weights).

    Args:
        model: the task model (the plain module, not a DDP wrapper; freezing changes under DDP
            are not supported).
        steps_per_stage: optimizer steps before the next layer is unfrozen (e.g. steps per epoch).
        start_step: steps already taken (when resuming a run).
    """

    def __init__(self, model: nn.Module, steps_per_stage: int, start_step: int = 0):
        if not isinstance(steps_per_stage, int) or steps_per_stage <= 0:
            raise ValueError(f"steps_per_stage must be a positive integer, got {steps_per_stage!r}")
        self.model = model
        self.steps_per_stage = steps_per_stage
        self.num_stages = len(unfreezing_stages(model))  # L + 2
        self.step = start_step  # steps taken so far
        self.stage: int | None = None  # the stage currently applied
        unfreeze(model)

    def stage_at(self, step: int) -> int:
        """The stage for the step that follows ``step`` steps already taken."""
        return min(step // self.steps_per_stage, self.num_stages - 1)

    def update(self) -> int:
        """Apply the stage of the coming step (only when it changes), count the step; return it."""
        stage = self.stage_at(self.step)
        if stage != self.stage:
            apply_unfreezing(self.model, stage)
            self.stage = stage
        self.step += 1
        return stage

    def wrap(self, step_fn: Callable[[nn.Module, Any], Any]) -> Callable[[nn.Module, Any], Any]:
        """``step_fn`` that first calls :meth:`update` (one call = one optimizer step)."""

        def wrapped(model: nn.Module, batch: Any) -> Any:
            self.update()
            return step_fn(model, batch)

        return wrapped


# --- discriminative learning rates -------------------------------------------------------------

def _no_decay(module: nn.Module, p: nn.Parameter) -> bool:
    return p.ndim < 2 or isinstance(module, (nn.LayerNorm, nn.Embedding))


def layerwise_lr_groups(model: nn.Module, base_lr: float, decay: float = 0.8, head_lr: float | None = None,
                        weight_decay: float | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups with learning rates that shrink layer by layer downwards.

    With ``L`` encoder layers numbered 1..L bottom-up, layer ``l`` gets ``base_lr · decay^(L-l)``
    (the top layer ``base_lr``), the embeddings ``base_lr · decay^L`` (lowest: general features,
    change them least), the pooler and the pre-LN final LayerNorm get the top layer's ``base_lr``,
    and the task head gets ``head_lr`` (default ``base_lr``; a new head often wants more). Only
    trainable parameters are included, each in exactly one group.

    Args:
        model: a model holding a BertModel.
        base_lr: learning rate of the top encoder layer.
        decay: factor per layer downwards, in (0, 1].
        head_lr: learning rate of the task head; None = ``base_lr``.
        weight_decay: None leaves it to the optimizer (``mlstep.train`` splits each group into
            decay / no-decay itself); a float splits each group here: biases, LayerNorm and
            embeddings get 0.0, the other weights ``weight_decay``.

    Returns:
        A list of ``{"params", "lr", "name"[, "weight_decay"]}`` dicts (empty groups left out),
        for ``train(..., param_groups=...)`` or ``torch.optim.AdamW``.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    if not base_lr > 0 or (head_lr is not None and not head_lr > 0):
        raise ValueError(f"learning rates must be positive, got base_lr={base_lr!r}, head_lr={head_lr!r}")
    bert = find_bert(model)
    L = len(bert.encoder.layers)
    named: list[tuple[str, float, nn.Module]] = [("embeddings", base_lr * decay**L, bert.embeddings)]
    for i, layer in enumerate(bert.encoder.layers):  # 0-based i is layer l = i + 1
        named.append((f"layer{i}", base_lr * decay ** (L - 1 - i), layer))
    if bert.encoder.final_norm is not None:
        named.append(("final_norm", base_lr, bert.encoder.final_norm))
    named.append(("pooler", base_lr, bert.pooler))
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()

    def add(name: str, lr: float, pairs: Iterator[tuple[nn.Module, nn.Parameter]]) -> None:
        parts: dict[bool | None, list[nn.Parameter]] = {}
        for module, p in pairs:
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            key = None if weight_decay is None else _no_decay(module, p)
            parts.setdefault(key, []).append(p)
        for key, params in parts.items():
            group: dict[str, Any] = {"params": params, "lr": lr, "name": name}
            if key is not None:
                group["weight_decay"] = 0.0 if key else weight_decay
                group["name"] = f"{name}/{'no_decay' if key else 'decay'}"
            groups.append(group)

    def owned(module: nn.Module) -> Iterator[tuple[nn.Module, nn.Parameter]]:
        for m in module.modules():
            for p in m.parameters(recurse=False):
                yield m, p

    for name, lr, module in named:
        add(name, lr, owned(module))
    add("head", base_lr if head_lr is None else head_lr, owned(model))  # everything left: the head
    return groups
