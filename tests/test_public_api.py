"""Every public entry point refuses bad input clearly (issue #25): one registry over the public API.

The walked modules are the reading path (``mlstep/*.py``), ``mlstep/tokenizers``,
``mlstep/metrics``, ``mlstep/multistage`` and the real-data loaders (``mlstep/data/loaders.py``,
``mlstep/data/conllu.py``). For each public callable the registry (:data:`CASES`) holds a builder
of valid arguments and named mutations that put one bad value in: hypothesis draws it (wrong
types, wrong shapes and lengths, empty inputs, out-of-range ids and probabilities, NaN and inf,
mismatched pairs of arguments). Each must raise a ValueError or TypeError (a FileNotFoundError for
a missing file; a KeyError or IndexError only where a function documents one) that

* names the argument (a whole word of the message), and
* is raised by mlstep's own code: never a PyTorch or numpy error from deep inside, never an
  AttributeError.

What a function deliberately accepts (an empty batch, an inf loss, ...) is listed in
:data:`ACCEPTED` and tested to work; every public name that is neither covered nor skipped (with a
reason, in :data:`SKIPPED`) fails :func:`test_every_public_name_is_covered_or_skipped`. A class is
covered through its constructor and its methods (``forward``, ``decode``, ``encode``, ...); the
constructors that take only a config from the stack above them (``MultiHeadAttention``,
``FeedForward``, ``TransformerBlock``, ``Transformer``, ``BertEmbeddings``) are covered through
their ``forward`` alone. Hypothesis runs derandomized, without shrinking (a bad value is simple
already), 10 examples a mutation: the file takes about 30 s on one core.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import math
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import nn

from mlstep import (
    attention,
    bert,
    config,
    crf,
    distill,
    finetune,
    generation,
    gpt,
    lora,
    masking,
    posttrain,
    transformer,
)
from mlstep.data import conllu, loaders
from mlstep.metrics import classification, language
from mlstep.multistage import adapt, curriculum, layerwise, multitask, pipeline, prune
from mlstep.tasks.labeled import TensorDataset
from mlstep.tokenizers import base, bpe, merges, wordpiece

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlstep"
WALKED = sorted({*(f"mlstep.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"),
                 *(f"mlstep.{folder}" + ("" if p.stem == "__init__" else f".{p.stem}")
                   for folder in ("tokenizers", "metrics", "multistage") for p in (PACKAGE / folder).glob("*.py")),
                 "mlstep.data.loaders", "mlstep.data.conllu"})
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: a bad value is simple already
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TMP = pathlib.Path(tempfile.mkdtemp(prefix="mlstep-api-"))
atexit.register(shutil.rmtree, TMP, ignore_errors=True)
NAN, INF = math.nan, math.inf
train = importlib.import_module("mlstep.train")  # the package's `train` attribute is the function
V = 20  # the tiny models' vocabulary


# --- the registry ---------------------------------------------------------------------------------

@dataclass
class Bad:
    """One bad-argument mutation: ``values`` (a strategy, or a function of the valid arguments
    that gives one) draws the bad value, ``apply`` puts it into the arguments (default: as ``arg``)."""

    arg: str  # the argument that is wrong; the message must name it (or one of ``names``)
    what: str  # what is wrong with it, for the test id
    values: Any
    apply: Callable[[dict, Any], None] | None = None
    names: tuple[str, ...] = ()  # default: (arg,); VALUE stands for the bad value itself (a path)
    raises: tuple[type[Exception], ...] = (ValueError, TypeError)


@dataclass
class Case:
    target: Any  # the public function or class
    label: str  # e.g. "BertModel.forward"
    build: Callable[[], dict]  # fresh valid arguments; keys starting with "_" are for ``call``
    call: Callable[[dict], Any]
    bad: list[Bad]


CASES: list[Case] = []
VALUE = "<the bad value>"  # in Bad.names: the message must quote the value (a missing file's path)


def case(target: Any, build: Callable[[], dict], *bad: Bad, call: Callable[[dict], Any] | None = None,
         label: str | None = None) -> None:
    CASES.append(Case(target, label or target.__qualname__, build, call or (lambda a: target(**a)), list(bad)))


def method(name: str) -> Callable[[dict], Any]:
    """Call ``args["_self"].<name>(**rest)`` (``"__call__"``: the module's forward)."""
    return lambda a: getattr(a.pop("_self"), name)(**a)


def put(*path: str) -> Callable[[dict, Any], None]:
    """Set a nested value: ``put("batch", "labels")`` sets ``args["batch"]["labels"]``."""
    def apply(args: dict, value: Any) -> None:
        target = args
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def drop(*path: str) -> Callable[[dict, Any], None]:
    """Delete the nested key that the drawn value names (``path`` leads to the dict)."""
    def apply(args: dict, key: Any) -> None:
        target = args
        for k in path:
            target = target[k]
        del target[key]
    return apply


# --- strategies of bad values ----------------------------------------------------------------------

def outside(low: float, high: float = INF, *, low_open: bool = False, high_open: bool = True) -> st.SearchStrategy:
    """Numbers outside an interval (infinities included where they are outside), and NaN."""
    parts = [st.just(NAN)]
    if low > -INF:
        parts.append(st.floats(max_value=low, exclude_max=not low_open))
    if high < INF:
        parts.append(st.floats(min_value=high, exclude_min=not high_open))
    elif high_open:
        parts.append(st.just(INF))
    return st.one_of(parts)


def ints_below(low: int) -> st.SearchStrategy:
    """Integers below ``low``, and values that are not integers at all."""
    return st.one_of(st.integers(min_value=-10**6, max_value=low - 1), st.sampled_from([2.5, "3", NAN]))


NOT_NUMBERS = st.sampled_from(["0.5", [0.5], None])
NOT_TENSORS = st.sampled_from([[[5, 6, 7]], "5 6 7", 5, np.full((2, 6), 5)])
NOT_MODULES = st.sampled_from([None, "model", {"weight": 1}, torch.zeros(2)])
NOT_TEXTS = st.sampled_from([3, None, b"bytes", ["nested"]])


def ids_outside(high: int, ignore: int | None = None) -> st.SearchStrategy:
    """Integer ids outside ``[0, high)`` (other than ``ignore``)."""
    return st.one_of(st.integers(-2**40, -1), st.integers(high, 2**40)).filter(lambda v: v != ignore)


def with_value(t: torch.Tensor, values: st.SearchStrategy) -> st.SearchStrategy:
    """``t`` with one entry (drawn) replaced by a drawn value."""
    def replaced(iv: tuple[int, Any]) -> torch.Tensor:
        out = t.clone().flatten()
        out[iv[0]] = iv[1]
        return out.view_as(t)
    return st.tuples(st.integers(0, t.numel() - 1), values).map(replaced)


def shapes(ok: Callable[[tuple], bool], *, max_dims: int = 4, max_side: int = 5) -> st.SearchStrategy:
    """Shapes (tuples of sizes) for which ``ok`` holds."""
    return st.lists(st.integers(0, max_side), max_size=max_dims).map(tuple).filter(ok)


def other_shape(shape: tuple, *, fill: float = 0, dtype=torch.long, ok: Callable[[tuple], bool] = lambda s: True
                ) -> st.SearchStrategy:
    """Tensors of any shape but ``shape`` (and those ``ok`` allows), filled with ``fill``."""
    return shapes(lambda s: s != tuple(shape) and ok(s)).map(lambda s: torch.full(s, fill, dtype=dtype))


def non_finite(t: torch.Tensor, values: tuple = (NAN, INF, -INF)) -> st.SearchStrategy:
    return with_value(t, st.sampled_from(values))


def broadcasts(a: tuple, b: tuple) -> bool:
    try:
        torch.broadcast_shapes(a, b)
        return True
    except RuntimeError:
        return False


# --- valid arguments ---------------------------------------------------------------------------------

TEXTS = ["the cat sat on the mat .", "a dog ran in the park .", "the bird sang a song in the tree ."] * 3
WP = wordpiece.WordPieceTokenizer.train(TEXTS, vocab_size=60)
BPE = bpe.ByteLevelBPETokenizer.train(TEXTS, vocab_size=300)


def tcfg(**kw: Any) -> config.TransformerConfig:
    return config.TransformerConfig(**{**dict(hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16), **kw})


def bcfg(vocab_size: int = V) -> bert.BertConfig:
    return bert.BertConfig(vocab_size, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                           max_position=12, dropout=0.0)


def gcfg() -> gpt.GPTConfig:
    return gpt.GPTConfig(V, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16, max_position=12, dropout=0.0)


def ids(b: int = 2, t: int = 6) -> torch.Tensor:
    """Ordinary token ids 5..V-1, ``(b, t)``."""
    return torch.arange(b * t).remainder(V - 5).add(5).view(b, t)


def tiny_bert_input() -> dict:
    return dict(input_ids=ids(), token_type_ids=torch.zeros(2, 6, dtype=torch.long),
                attention_mask=torch.tensor([[1] * 6, [1] * 4 + [0] * 2]))


def labeled(n: int = 4, t: int = 5, tags: bool = False) -> TensorDataset:
    labels = torch.tensor([[0, 1, 2, 1, 0]] * n)[:, :t] if tags else torch.arange(n) % 2
    return TensorDataset({"input_ids": ids(n, t), "attention_mask": torch.ones(n, t, dtype=torch.long), "labels": labels})


def write(name: str, text: str) -> pathlib.Path:
    path = TMP / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MISSING = st.text(alphabet="abcxyz", min_size=1, max_size=8).map(lambda s: str(TMP / "missing" / s))
NOT_PATHS = st.sampled_from([3, 2.5, ["data"], None])


# --- config, attention, transformer ----------------------------------------------------------------

case(config.TransformerConfig, lambda: dict(hidden_size=8, num_heads=2),
     Bad("hidden_size", "not a positive integer", ints_below(1)),
     Bad("num_heads", "does not divide hidden_size", st.sampled_from([3, 5, 6, 7])),
     Bad("intermediate_size", "not a positive integer", ints_below(1)),
     Bad("dropout", "not a probability", st.one_of(outside(0, 1), NOT_NUMBERS)),
     Bad("layer_norm_eps", "not a number >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("gelu", "unknown approximation", st.text(max_size=5).filter(lambda s: s not in ("none", "tanh"))),
     Bad("causal", "not a bool", st.sampled_from([1, "yes", None])),
     Bad("pre_norm", "not a bool", st.sampled_from([0, "no", None])))

case(attention.rotate,
     lambda: dict(x=torch.randn(2, 2, 3, 4), positions=torch.arange(3)),
     Bad("x", "not a tensor", NOT_TENSORS),
     Bad("x", "not (B, H, T, K)", st.sampled_from([torch.randn(3, 4), torch.randn(2, 3, 4)])),
     Bad("x", "integer dtype", st.just(torch.ones(2, 2, 3, 4, dtype=torch.long))),
     Bad("positions", "not a tensor", NOT_TENSORS),
     Bad("positions", "not (T,) or (B, T)", st.just(torch.zeros(1, 2, 3, dtype=torch.long))))
case(attention.scaled_dot_product_attention,
     lambda: dict(q=torch.randn(2, 3, 4), k=torch.randn(2, 5, 4), v=torch.randn(2, 5, 6)),
     Bad("q", "not a tensor", NOT_TENSORS),
     Bad("q", "integer dtype", st.just(torch.ones(2, 3, 4, dtype=torch.long))),
     Bad("k", "dtype differs from q", st.sampled_from([torch.float64, torch.float16]).map(lambda d: torch.randn(2, 5, 4).to(d))),
     Bad("k", "last dimension differs from q", st.integers(1, 7).filter(lambda d: d != 4).map(lambda d: torch.randn(2, 5, d))),
     Bad("v", "positions differ from k", st.integers(1, 7).filter(lambda s: s != 5).map(lambda s: torch.randn(2, s, 6))),
     Bad("q", "fewer than 2 dimensions", st.sampled_from([torch.randn(4), torch.tensor(1.0)])),
     Bad("mask", "does not broadcast to the scores", other_shape((2, 3, 5), dtype=torch.bool,
                                                                ok=lambda s: not broadcasts(s, (2, 3, 5)))),
     Bad("mask", "not boolean", st.sampled_from([torch.long, torch.float32]).map(lambda d: torch.ones(2, 3, 5, dtype=d))),
     Bad("mask", "not a tensor", st.sampled_from([[[True] * 5], "causal", 1])),
     Bad("dropout_p", "not a probability", st.one_of(outside(0, 1, high_open=False), NOT_NUMBERS)))

case(attention.padding_mask, lambda: dict(attention_mask=torch.ones(2, 5, dtype=torch.long)),
     Bad("attention_mask", "not (batch, seq_len)", other_shape((2, 5), fill=1, ok=lambda s: len(s) != 2)),
     Bad("attention_mask", "not a tensor", NOT_TENSORS))

case(attention.causal_mask, lambda: dict(t=3, s=5),
     Bad("t", "not a positive integer", ints_below(1)),
     Bad("s", "not a positive integer", ints_below(1)))

case(attention.MultiHeadAttention,
     lambda: dict(_self=attention.MultiHeadAttention(tcfg()), query=torch.randn(2, 3, 8)),
     Bad("query", "not (batch, positions, hidden_size)", other_shape((2, 3, 8), dtype=torch.float32)),
     Bad("query", "not a tensor", NOT_TENSORS),
     Bad("key", "batch differs from query", st.integers(1, 5).filter(lambda b: b != 2).map(lambda b: torch.randn(b, 4, 8))),
     Bad("value", "positions differ from key", st.integers(1, 6).filter(lambda s: s != 3).map(lambda s: torch.randn(2, s, 8))),
     Bad("mask", "does not broadcast to (B, H, T, S)", other_shape((2, 3, 3), dtype=torch.bool,
         ok=lambda s: len(s) > 1 and not broadcasts((s[0], 1, *s[1:]) if len(s) == 3 else s, (2, 2, 3, 3)))),
     Bad("mask", "not boolean", st.just(torch.ones(2, 3, 3))),
     call=method("__call__"), label="MultiHeadAttention.forward")

case(transformer.FeedForward, lambda: dict(_self=transformer.FeedForward(tcfg()), x=torch.randn(2, 3, 8)),
     Bad("x", "last dimension is not hidden_size", st.integers(1, 12).filter(lambda d: d != 8).map(lambda d: torch.randn(2, 3, d))),
     Bad("x", "not a tensor", NOT_TENSORS), call=method("__call__"), label="FeedForward.forward")

case(transformer.TransformerBlock,
     lambda: dict(_self=transformer.TransformerBlock(tcfg(pre_norm=True)), x=torch.randn(2, 3, 8)),
     Bad("x", "not (batch, positions, hidden_size)", other_shape((2, 3, 8), dtype=torch.float32)),
     Bad("x", "not a tensor", NOT_TENSORS), call=method("__call__"), label="TransformerBlock.forward")

case(transformer.Transformer, lambda: dict(_self=transformer.Transformer(tcfg()), x=torch.randn(2, 3, 8)),
     Bad("x", "not (batch, positions, hidden_size)", other_shape((2, 3, 8), dtype=torch.float32)),
     Bad("mask", "does not broadcast", st.just(torch.ones(3, 4, dtype=torch.bool))),
     call=method("__call__"), label="Transformer.forward")

case(transformer.init_weights, lambda: dict(module=nn.Linear(3, 2), std=0.02),
     Bad("module", "not an nn.Module", st.sampled_from([None, "linear", torch.zeros(2)])),
     Bad("std", "not a finite number >= 0", st.one_of(outside(0), NOT_NUMBERS)))

case(transformer.find_backbone, lambda: dict(model=bert.BertModel(bcfg())),
     Bad("model", "holds no BertModel or GPT", st.sampled_from([nn.Linear(2, 2), nn.Sequential()]).map(lambda m: m)),
     Bad("model", "not an nn.Module", NOT_MODULES))

case(transformer.classifier_layers, lambda: dict(hidden_size=8, num_labels=3, dropout=0.1, initializer_range=0.02),
     Bad("hidden_size", "not a positive integer", ints_below(1)),
     Bad("num_labels", "not an integer >= 2", ints_below(2)),
     Bad("dropout", "not a probability", outside(0, 1)),
     Bad("initializer_range", "not a finite number >= 0", outside(0)))


# --- BERT and masking ------------------------------------------------------------------------------------

case(bert.BertConfig, lambda: dict(vocab_size=V, hidden_size=8, num_heads=2),
     Bad("vocab_size", "not a positive integer", ints_below(1)),
     Bad("max_position", "not a positive integer", ints_below(1)),
     Bad("type_vocab_size", "not a positive integer", ints_below(1)),
     Bad("initializer_range", "not a finite number >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("dropout", "not a probability", outside(0, 1)))


def bert_input_bads(*, embeddings: bool = False) -> list[Bad]:
    bads = [
        Bad("input_ids", "out of [0, vocab_size)", lambda a: with_value(a["input_ids"], ids_outside(V))),
        Bad("input_ids", "floating dtype", lambda a: st.just(a["input_ids"].float())),
        Bad("input_ids", "longer than max_position", st.integers(13, 20).map(lambda t: ids(2, t)),
            apply=lambda a, x: a.update(input_ids=x, token_type_ids=torch.zeros_like(x))),
        Bad("input_ids", "not (batch, seq_len)", st.sampled_from([ids(1, 6)[0], ids(2, 6)[None], ids(2, 0)]),
            apply=lambda a, x: a.update(input_ids=x, token_type_ids=torch.zeros_like(x))),
        Bad("token_type_ids", "out of [0, type_vocab_size)", lambda a: with_value(a["token_type_ids"], ids_outside(2))),
        Bad("token_type_ids", "shape differs from input_ids", other_shape((2, 6))),
    ]
    if not embeddings:
        bads += [
            Bad("input_ids", "not a tensor", NOT_TENSORS),
            Bad("attention_mask", "shape differs from input_ids", other_shape((2, 6), fill=1)),
            Bad("attention_mask", "not 0/1", lambda a: with_value(a["attention_mask"], st.sampled_from([2, -1, 7]))),
            Bad("attention_mask", "a row without a real token", st.just(torch.tensor([[1] * 6, [0] * 6]))),
            Bad("attention_mask", "not a tensor", st.sampled_from([[[1] * 6] * 2, "mask"])),
        ]
    return bads


case(bert.BertEmbeddings,
     lambda: dict(_self=bert.BertEmbeddings(bcfg()), input_ids=ids(), token_type_ids=torch.zeros(2, 6, dtype=torch.long)),
     *bert_input_bads(embeddings=True), call=method("__call__"), label="BertEmbeddings.forward")
case(bert.BertModel, lambda: dict(config=bcfg()),
     Bad("config", "not a BertConfig", st.sampled_from([tcfg(), gcfg(), None])), label="BertModel.__init__")
case(bert.BertModel, lambda: dict(_self=bert.BertModel(bcfg()), **tiny_bert_input()),
     *bert_input_bads(), call=method("__call__"), label="BertModel.forward")
case(bert.BertForPreTraining, lambda: dict(config=bcfg()),
     Bad("config", "not a BertConfig", st.sampled_from([tcfg(), gcfg(), None])), label="BertForPreTraining.__init__")


def pretraining_input() -> dict:
    mlm = torch.full((2, 6), -100)
    mlm[:, 1] = 7
    return dict(_self=bert.BertForPreTraining(bcfg()), **tiny_bert_input(), mlm_labels=mlm, nsp_labels=torch.tensor([0, 1]))


case(bert.BertForPreTraining, pretraining_input,
     Bad("mlm_labels", "out of [0, vocab_size) and not -100", lambda a: with_value(a["mlm_labels"], ids_outside(V, -100))),
     Bad("mlm_labels", "shape differs from input_ids", other_shape((2, 6), fill=-100)),
     Bad("mlm_labels", "floating dtype", lambda a: st.just(a["mlm_labels"].float())),
     Bad("nsp_labels", "not 0 or 1", lambda a: with_value(a["nsp_labels"], ids_outside(2))),
     Bad("nsp_labels", "not one per sequence", other_shape((2,))),
     Bad("input_ids", "not a tensor (with labels)", NOT_TENSORS),
     call=method("__call__"), label="BertForPreTraining.forward")

case(bert.mlm_loss, lambda: dict(logits=torch.randn(2, 6, V), labels=torch.tensor([[-100, 3, -100, 4, 5, -100]] * 2)),
     Bad("labels", "out of [0, V) and not -100", lambda a: with_value(a["labels"], ids_outside(V, -100))),
     Bad("labels", "shape differs from the logits' rows", other_shape((2, 6), fill=-100)),
     Bad("labels", "floating dtype", st.just(torch.zeros(2, 6))),
     Bad("logits", "not a tensor", NOT_TENSORS))

case(bert.bert_from_hf, lambda: dict(hf_model=None),
     Bad("hf_model", "not a Hugging Face BertForPreTraining", st.sampled_from([nn.Linear(2, 2), "bert-base-uncased", None])))


def mask_tokens_args() -> dict:
    return dict(input_ids=ids(), vocab_size=V, mask_id=4, special_ids=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0))


case(masking.mask_tokens, mask_tokens_args,
     Bad("input_ids", "out of [0, vocab_size)", lambda a: with_value(a["input_ids"], ids_outside(V))),
     Bad("input_ids", "not (batch, seq_len)", st.sampled_from([ids()[0], ids()[None]])),
     Bad("input_ids", "not a tensor", NOT_TENSORS),
     Bad("vocab_size", "not an integer", st.sampled_from([20.5, "20", None])),
     Bad("mask_id", "out of [0, vocab_size)", ids_outside(V)),
     Bad("special_ids", "out of [0, vocab_size)", ids_outside(V).map(lambda i: [0, i])),
     Bad("special_ids", "not an iterable of ids", st.sampled_from([3, None, ["a"]])),
     Bad("mlm_probability", "not in (0, 1)", st.one_of(outside(0, 1, low_open=True), NOT_NUMBERS)),
     Bad("word_ids", "shape differs from input_ids", other_shape((2, 6))),
     Bad("word_ids", "not a tensor", st.sampled_from([[[0] * 6] * 2, "words"])),
     Bad("attention_mask", "shape differs from input_ids", other_shape((2, 6), fill=1)),
     Bad("generator", "not a torch.Generator", st.sampled_from([0, "seed", np.random.default_rng(0)])))

for pairs_fn in (masking.nsp_pairs, masking.sop_pairs):
    case(pairs_fn, lambda: dict(documents=[["a", "b"], ["c", "d", "e"]]),
         Bad("documents", "a single str", st.text(min_size=1, max_size=5)),
         Bad("documents", "not an iterable", st.sampled_from([3, None, 2.5])),
         Bad("documents", "no document with 2 sentences", st.sampled_from([[], [["a"]], [[], ["b"]]])),
         Bad("documents", "a flat list of sentences", st.just(["a", "b", "c"])))
case(masking.nsp_pairs, lambda: dict(documents=[["a", "b"], ["c", "d", "e"]]),
     Bad("documents", "only one non-empty document", st.just([["a", "b", "c"], []])), label="nsp_pairs (one document)")


# --- training ------------------------------------------------------------------------------------------

case(train.TrainConfig, lambda: dict(max_steps=3),
     Bad("max_steps", "not a positive integer", ints_below(1)),
     Bad("lr", "not > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)),
     Bad("weight_decay", "not >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("warmup_ratio", "not in [0, 1]", st.one_of(outside(0, 1, high_open=False), NOT_NUMBERS)),
     Bad("decay_ratio", "not in [0, 1]", outside(0, 1, high_open=False)),
     Bad("grad_clip", "not > 0", outside(0, low_open=True)),
     Bad("log_every", "not a positive integer", ints_below(1)),
     Bad("eval_every", "not a positive integer", ints_below(1)),
     Bad("precision", "unknown", st.text(max_size=6).filter(lambda s: s not in ("auto", "bf16", "fp32"))))


def train_args() -> dict:
    model = nn.Linear(2, 1)
    return dict(model=model, data=[torch.randn(4, 2)], step_fn=lambda m, b: m(b).pow(2).mean(),
                config=train.TrainConfig(max_steps=1, progress=False, device="cpu"))


NOT_CALLABLES = st.sampled_from([None, "step", 3]).filter(lambda f: f is not None)
case(train.train, train_args,
     Bad("model", "not an nn.Module", NOT_MODULES),
     Bad("data", "empty", st.sampled_from([[], ()])),
     Bad("data", "not iterable", st.sampled_from([3, None, 2.5])),
     Bad("step_fn", "not callable", NOT_CALLABLES),
     Bad("config", "not a TrainConfig", st.sampled_from([None, {"max_steps": 1}, 1])),
     Bad("eval_fn", "not callable", NOT_CALLABLES),
     Bad("resume", "neither a bool nor a path", st.sampled_from([3, 2.5, ["ckpt.pt"]])))

case(train.evaluate, lambda: dict(model=nn.Linear(2, 1), eval_fn=lambda m: {"x": 1.0}),
     Bad("model", "not an nn.Module", NOT_MODULES),
     Bad("eval_fn", "not callable", NOT_CALLABLES))

case(train.lr_schedule, lambda: dict(config=train.TrainConfig(max_steps=3)),
     Bad("config", "not a TrainConfig", st.sampled_from([None, {"max_steps": 3}, 3])))

case(train.make_optimizer, lambda: dict(model=nn.Linear(2, 1), config=train.TrainConfig(max_steps=3)),
     Bad("model", "not an nn.Module", NOT_MODULES),
     Bad("config", "not a TrainConfig", st.sampled_from([None, {"lr": 1e-3}])),
     Bad("param_groups", "not a list of dicts with 'params'",
         st.sampled_from([{"params": []}, [{"lr": 1e-2}], ["params"], [3]])),
     Bad("param_groups", "a parameter not in the model", st.just([{"params": [nn.Parameter(torch.zeros(2))]}])))


# --- fine-tuning, LoRA, CRF ------------------------------------------------------------------------------

HEADS = (finetune.BertForSequenceClassification, finetune.BertForTokenClassification, crf.BertCRFTagger)
for head in HEADS:
    case(head, lambda: dict(config_or_bert=bcfg(), num_labels=3),
         Bad("config_or_bert", "neither a BertConfig nor a BertModel", st.sampled_from([tcfg(), gcfg(), None, "bert"]),
             names=("config_or_bert", "config")),
         Bad("num_labels", "not an integer >= 2", ints_below(2)),
         Bad("dropout", "not a probability", outside(0, 1)), label=f"{head.__name__}.__init__")
case(finetune.BertForSequenceClassification, lambda: dict(config_or_bert=bcfg(), num_labels=3),
     Bad("pooling", "unknown", st.text(max_size=5).filter(lambda s: s not in ("cls", "mean"))),
     label="BertForSequenceClassification.__init__ (pooling)")

case(finetune.BertForSequenceClassification,
     lambda: dict(_self=finetune.BertForSequenceClassification(bcfg(), 3, pooling="mean"), **tiny_bert_input(),
                  labels=torch.tensor([0, 2])),
     Bad("labels", "out of [0, num_labels)", lambda a: with_value(a["labels"], ids_outside(3))),
     Bad("labels", "not one per sequence", other_shape((2,))),
     Bad("labels", "floating dtype", st.just(torch.tensor([0.0, 1.0]))),
     Bad("input_ids", "not a tensor (with labels)", NOT_TENSORS),
     Bad("attention_mask", "a row without a real token", st.just(torch.tensor([[1] * 6, [0] * 6]))),
     call=method("__call__"), label="BertForSequenceClassification.forward")


def token_head_input(cls: type) -> Callable[[], dict]:
    return lambda: dict(_self=cls(bcfg(), 3), **tiny_bert_input(),
                        labels=torch.tensor([[-100, 0, 1, 2, 0, -100], [-100, 1, 1, -100, -100, -100]]))


for head in (finetune.BertForTokenClassification, crf.BertCRFTagger):
    case(head, token_head_input(head),
         Bad("labels", "out of [0, num_labels) and not -100", lambda a: with_value(a["labels"], ids_outside(3, -100))),
         Bad("labels", "shape differs from input_ids", other_shape((2, 6), fill=0)),
         Bad("labels", "all -100 (nothing to learn from)", st.just(torch.full((2, 6), -100))),
         Bad("input_ids", "not a tensor", NOT_TENSORS),
         call=method("__call__"), label=f"{head.__name__}.forward")

case(crf.BertCRFTagger,
     lambda: dict(_self=crf.BertCRFTagger(bcfg(), 3), **tiny_bert_input(),
                  starts=torch.tensor([[False, True, True, False, True, False]] * 2)),
     Bad("starts", "not boolean", st.just(torch.ones(2, 6, dtype=torch.long))),
     Bad("starts", "shape differs from input_ids", other_shape((2, 6), fill=1, dtype=torch.bool)),
     call=method("decode"), label="BertCRFTagger.decode")


def step_batch() -> dict:
    return dict(model=finetune.BertForSequenceClassification(bcfg(), 2),
                batch={**tiny_bert_input(), "labels": torch.tensor([0, 1])})


case(finetune.classification_step, step_batch,
     Bad("batch", "lacks a key the step needs", st.sampled_from(["input_ids", "labels"]), apply=drop("batch")),
     Bad("batch", "not a dict", st.sampled_from([[1, 2], "batch", None])),
     Bad("model", "not callable", NOT_CALLABLES))

case(finetune.mean_pool, lambda: dict(hidden=torch.randn(2, 6, 8), attention_mask=torch.ones(2, 6)),
     Bad("hidden", "not (batch, positions, hidden)", other_shape((2, 6, 8), dtype=torch.float32, ok=lambda s: len(s) != 3)),
     Bad("hidden", "not a tensor", NOT_TENSORS),
     Bad("attention_mask", "shape differs from hidden's (batch, positions)", other_shape((2, 6), fill=1)),
     Bad("attention_mask", "a row without a real token", st.just(torch.tensor([[1.0] * 6, [0.0] * 6]))))

for fn in (finetune.freeze, finetune.unfreeze):
    case(fn, lambda: dict(module=nn.Linear(2, 2)), Bad("module", "not an nn.Module", NOT_MODULES))
for fn in (finetune.freeze_encoder, finetune.unfreezing_stages, prune.prunable_weights, prune.sparsity):
    case(fn, lambda: dict(model=finetune.BertForSequenceClassification(bcfg(), 2)),
         Bad("model", "holds no BertModel or GPT", st.just(nn.Linear(2, 2))),
         Bad("model", "not an nn.Module", NOT_MODULES))

case(finetune.GradualUnfreezer, lambda: dict(model=finetune.BertForSequenceClassification(bcfg(), 2), steps_per_stage=2),
     Bad("steps_per_stage", "not a positive integer", ints_below(1)),
     Bad("model", "holds no BertModel or GPT", st.just(nn.Linear(2, 2))))

case(finetune.layerwise_lr_groups, lambda: dict(model=finetune.BertForSequenceClassification(bcfg(), 2), base_lr=1e-3),
     Bad("base_lr", "not > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)),
     Bad("decay", "not in (0, 1]", st.one_of(outside(0, 1, low_open=True, high_open=False), NOT_NUMBERS)),
     Bad("head_lr", "not > 0", st.one_of(outside(0, low_open=True), st.just("1e-3"))),
     Bad("model", "holds no BertModel or GPT", st.just(nn.Linear(2, 2))))

case(lora.LoRALinear, lambda: dict(base=nn.Linear(4, 3), rank=2, alpha=4),
     Bad("base", "not an nn.Linear", st.sampled_from([nn.Conv1d(2, 2, 1), None, torch.zeros(3, 4)])),
     Bad("rank", "not a positive integer", ints_below(1)),
     Bad("alpha", "not > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)))

case(lora.apply_lora, lambda: dict(model=finetune.BertForSequenceClassification(bcfg(), 2)),
     Bad("targets", "not among q_proj, k_proj, v_proj, out_proj",
         st.sampled_from(["q_proj", (), ("query",), ("q_proj", "dense")])),
     Bad("rank", "not a positive integer", ints_below(1)),
     Bad("alpha", "not > 0", outside(0, low_open=True)),
     Bad("model", "has no attention layer", st.sampled_from([nn.Linear(2, 2), nn.Sequential()])),
     Bad("model", "not an nn.Module", NOT_MODULES))

case(lora.merge_lora, lambda: dict(model=nn.Linear(2, 2)), Bad("model", "not an nn.Module", NOT_MODULES))

case(crf.CRF, lambda: dict(num_tags=3), Bad("num_tags", "not an integer >= 2", ints_below(2)), label="CRF.__init__")


def crf_args(decode: bool = False) -> Callable[[], dict]:
    def build() -> dict:
        args = dict(_self=crf.CRF(3), emissions=torch.randn(2, 4, 3),
                    mask=torch.tensor([[True] * 4, [True, True, False, False]]))
        return args if decode else {**args, "tags": torch.tensor([[0, 1, 2, 1], [2, 0, 0, 0]])}
    return build


for decode in (False, True):
    case(crf.CRF, crf_args(decode),
         Bad("emissions", "not (batch, words, num_tags)", other_shape((2, 4, 3), dtype=torch.float32)),
         Bad("emissions", "NaN or inf", lambda a: non_finite(a["emissions"])),
         Bad("emissions", "not a tensor", NOT_TENSORS),
         Bad("mask", "not left-aligned", st.just(torch.tensor([[True] * 4, [False, True, True, False]]))),
         Bad("mask", "a sentence without a word", st.just(torch.tensor([[True] * 4, [False] * 4]))),
         Bad("mask", "not boolean", st.just(torch.ones(2, 4, dtype=torch.long))),
         *([] if decode else [Bad("tags", "out of [0, num_tags)", lambda a: with_value(a["tags"], ids_outside(3)))]),
         call=method("decode" if decode else "__call__"), label="CRF.decode" if decode else "CRF.forward")

case(crf.pack_words, lambda: dict(pieces=torch.randn(2, 5, 3), starts=torch.tensor([[True, False, True, True, False]] * 2)),
     Bad("starts", "not boolean", st.just(torch.ones(2, 5, dtype=torch.long))),
     Bad("starts", "shape differs from pieces' (batch, positions)", other_shape((2, 5), fill=1, dtype=torch.bool)),
     Bad("pieces", "not (batch, positions, C)", other_shape((2, 5, 3), dtype=torch.float32, ok=lambda s: len(s) != 3)),
     Bad("pieces", "not a tensor", NOT_TENSORS))


# --- distillation ----------------------------------------------------------------------------------------

for loss_fn in (distill.soft_target_loss, distill.distillation_loss):
    case(loss_fn, lambda: dict(student_logits=torch.randn(4, 5), teacher_logits=torch.randn(4, 5)),
         Bad("teacher_logits", "shape differs from student_logits", other_shape((4, 5), dtype=torch.float32)),
         Bad("student_logits", "NaN or inf", lambda a: non_finite(a["student_logits"])),
         Bad("teacher_logits", "NaN or inf", lambda a: non_finite(a["teacher_logits"])),
         Bad("student_logits", "not a tensor", NOT_TENSORS),
         Bad("student_logits", "fewer than 2 dimensions", st.just(torch.randn(5))),
         Bad("temperature", "not a finite number > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)))

case(distill.distillation_loss,
     lambda: dict(student_logits=torch.randn(4, 5), teacher_logits=torch.randn(4, 5), labels=torch.tensor([0, 4, -100, 2])),
     Bad("alpha", "not in [0, 1]", st.one_of(outside(0, 1, high_open=False), NOT_NUMBERS)),
     Bad("labels", "out of [0, classes) and not -100", lambda a: with_value(a["labels"], ids_outside(5, -100))),
     Bad("labels", "not one per row", other_shape((4,))),
     Bad("labels", "None with alpha=0 (no loss at all)", st.just(None), apply=lambda a, _: a.update(labels=None, alpha=0.0)),
     label="distillation_loss (labels, alpha)")

case(distill.distillation_step_fn, lambda: dict(teacher=finetune.BertForSequenceClassification(bcfg(), 2)),
     Bad("temperature", "not a finite number > 0", outside(0, low_open=True)),
     Bad("alpha", "not in [0, 1]", outside(0, 1, high_open=False)),
     Bad("teacher", "not an nn.Module", NOT_MODULES))

case(distill.student_config, lambda: dict(teacher_config=bcfg()),
     Bad("teacher_config", "not a TransformerConfig", st.sampled_from([None, {"num_layers": 2}, 2])),
     Bad("num_layers", "not a positive integer", ints_below(1)),
     Bad("hidden_size", "not a positive integer", ints_below(1)),
     Bad("hidden_size", "not divisible by num_heads", st.sampled_from([3, 5, 7])))

case(distill.default_layer_map, lambda: dict(teacher_layers=4, student_layers=2),
     Bad("student_layers", "not in [1, teacher_layers]", st.one_of(ints_below(1), st.integers(5, 100))),
     Bad("teacher_layers", "not a positive integer", ints_below(1)))

case(distill.init_student_from_teacher,
     lambda: dict(student=finetune.BertForSequenceClassification(bcfg(), 2),
                  teacher=finetune.BertForSequenceClassification(bcfg(), 2)),
     Bad("student", "holds no BertModel or GPT", st.sampled_from([nn.Linear(2, 2), None])),
     Bad("teacher", "holds no BertModel or GPT", st.sampled_from([nn.Linear(2, 2), None])),
     Bad("layer_map", "not one teacher layer per student layer", st.sampled_from([[0], [0, 1, 1], [0, 2], [-1, 0]])),
     Bad("teacher", "another width", st.just(bert.BertModel(bert.BertConfig(V, hidden_size=4, num_heads=2)))))

case(distill.init_embeddings_by_projection,
     lambda: dict(student=bert.BertModel(bert.BertConfig(V, hidden_size=4, num_heads=2, max_position=12)),
                  teacher=bert.BertModel(bcfg())),
     Bad("student", "holds no BertModel or GPT", st.sampled_from([nn.Linear(2, 2), None])),
     Bad("teacher", "holds no BertModel or GPT", st.sampled_from([nn.Linear(2, 2), None])),
     Bad("student", "wider than the teacher", st.just(bert.BertModel(bert.BertConfig(V, hidden_size=16, num_heads=2)))))


# --- GPT and generation -------------------------------------------------------------------------------------

case(gpt.GPTConfig, lambda: dict(vocab_size=V, hidden_size=8, num_heads=2),
     Bad("causal", "False (a GPT is causal)", st.just(False)),
     Bad("vocab_size", "not a positive integer", ints_below(1)),
     Bad("max_position", "not a positive integer", ints_below(1)))

case(gpt.GPT, lambda: dict(config=gcfg()),
     Bad("config", "not a GPTConfig", st.sampled_from([bcfg(), tcfg(), None])), label="GPT.__init__")


def gpt_input() -> dict:
    return dict(_self=gpt.GPT(gcfg()), input_ids=ids(), labels=ids())


case(gpt.GPT, gpt_input,
     Bad("input_ids", "out of [0, vocab_size)", lambda a: with_value(a["input_ids"], ids_outside(V))),
     Bad("input_ids", "longer than max_position", st.integers(13, 20).map(lambda t: ids(2, t)),
         apply=lambda a, x: a.update(input_ids=x, labels=None)),
     Bad("input_ids", "not (batch, seq_len)", st.sampled_from([ids()[0], ids()[None], ids(2, 0)]),
         apply=lambda a, x: a.update(input_ids=x, labels=None)),
     Bad("input_ids", "not a tensor (with labels)", NOT_TENSORS),
     Bad("labels", "out of [0, vocab_size) and not -100", lambda a: with_value(a["labels"], ids_outside(V, -100))),
     Bad("labels", "shape differs from input_ids", other_shape((2, 6), fill=5)),
     Bad("labels", "no target after position 0", st.just(torch.tensor([[5] + [-100] * 5] * 2))),
     Bad("attention_mask", "shape differs from input_ids", other_shape((2, 6), fill=1)),
     Bad("attention_mask", "a row without a real token", st.just(torch.tensor([[1] * 6, [0] * 6]))),
     call=method("__call__"), label="GPT.forward")

case(gpt.next_token_targets, lambda: dict(labels=ids()),
     Bad("labels", "not (batch, seq_len)", st.sampled_from([ids()[0], ids()[None], torch.tensor(3)])),
     Bad("labels", "not a tensor", NOT_TENSORS))

case(gpt.lm_step, lambda: dict(model=gpt.GPT(gcfg()), batch={"input_ids": ids()}),
     Bad("batch", "lacks input_ids", st.just("input_ids"), apply=drop("batch")),
     Bad("batch", "not a dict", st.sampled_from([[ids()], ids(), None])))

case(gpt.gpt_from_hf, lambda: dict(hf_model=None),
     Bad("hf_model", "not a Hugging Face GPT2LMHeadModel", st.sampled_from([nn.Linear(2, 2), "gpt2", None])))
case(gpt.llama_from_hf, lambda: dict(hf_model=None),
     Bad("hf_model", "not a Hugging Face LlamaForCausalLM", st.sampled_from([nn.Linear(2, 2), "meta-llama", None])))

case(gpt.GPTForSequenceClassification, lambda: dict(config_or_gpt=gcfg(), num_labels=3),
     Bad("config_or_gpt", "neither a GPTConfig nor a GPT", st.sampled_from([bcfg(), tcfg(), None, "gpt2"]),
         names=("config_or_gpt", "config")),
     Bad("num_labels", "not an integer >= 2", ints_below(2)),
     Bad("dropout", "not a probability", outside(0, 1)), label="GPTForSequenceClassification.__init__")

case(gpt.GPTForSequenceClassification,
     lambda: dict(_self=gpt.GPTForSequenceClassification(gcfg(), 3), input_ids=ids(),
                  attention_mask=torch.tensor([[1] * 6, [1] * 4 + [0] * 2]), labels=torch.tensor([0, 2])),
     Bad("labels", "out of [0, num_labels)", lambda a: with_value(a["labels"], ids_outside(3))),
     Bad("labels", "not one per sequence", other_shape((2,))),
     Bad("token_type_ids", "not all 0 (a GPT has no segments)", st.just(torch.ones(2, 6, dtype=torch.long))),
     Bad("token_type_ids", "not a tensor", st.sampled_from([[[0] * 6] * 2, "segments"])),
     Bad("attention_mask", "padding on the left", st.just(torch.tensor([[0, 1, 1, 1, 1, 1]] * 2))),
     Bad("attention_mask", "shape differs from input_ids", other_shape((2, 6), fill=1)),
     Bad("attention_mask", "not a tensor", st.sampled_from([[[1] * 6] * 2, "mask"])),
     Bad("input_ids", "not a tensor", NOT_TENSORS),
     call=method("__call__"), label="GPTForSequenceClassification.forward")

LOGITS = torch.randn(2, V)
case(generation.filter_logits, lambda: dict(logits=LOGITS.clone(), top_k=5, top_p=0.9),
     Bad("logits", "not (batch, vocab)", other_shape((2, V), dtype=torch.float32, ok=lambda s: len(s) != 2)),
     Bad("logits", "NaN or +inf", lambda a: non_finite(a["logits"], (NAN, INF))),
     Bad("logits", "not a tensor", NOT_TENSORS),
     Bad("top_k", "not a positive integer", ints_below(1)),
     Bad("top_p", "not in (0, 1]", st.one_of(outside(0, 1, low_open=True, high_open=False), NOT_NUMBERS.filter(bool))))

case(generation.sample_next, lambda: dict(logits=LOGITS.clone(), generator=torch.Generator().manual_seed(0)),
     Bad("logits", "NaN or +inf", lambda a: non_finite(a["logits"], (NAN, INF))),
     Bad("logits", "a row that is all -inf", st.just(torch.cat([LOGITS[:1], torch.full((1, V), -INF)]))),
     Bad("logits", "not (batch, vocab)", st.just(LOGITS[0])),
     Bad("temperature", "not a finite number >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("top_k", "not a positive integer", ints_below(1)),
     Bad("generator", "not a torch.Generator", st.sampled_from([0, "seed", np.random.default_rng(0)])))


def generate_args() -> dict:
    return dict(model=gpt.GPT(gcfg()), input_ids=ids(2, 3), max_new_tokens=4, generator=torch.Generator().manual_seed(0))


case(generation.generate, generate_args,
     Bad("model", "not a GPT", st.sampled_from([bert.BertModel(bcfg()), nn.Linear(2, 2), None])),
     Bad("input_ids", "not a tensor", NOT_TENSORS),
     Bad("input_ids", "not (batch, seq_len) or (seq_len,)", st.sampled_from([ids()[None], torch.tensor(5), ids(2, 0)])),
     Bad("input_ids", "out of [0, vocab_size)", lambda a: with_value(a["input_ids"], ids_outside(V))),
     Bad("max_new_tokens", "not a positive integer", ints_below(1)),
     Bad("max_new_tokens", "past max_position", st.integers(10, 100)),
     Bad("temperature", "not a finite number >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("top_k", "not a positive integer", ints_below(1)),
     Bad("top_p", "not in (0, 1]", outside(0, 1, low_open=True, high_open=False)),
     Bad("eos_id", "out of [0, vocab_size)", st.one_of(ids_outside(V), st.sampled_from([2.5, "eos"]))),
     Bad("attention_mask", "shape differs from input_ids", other_shape((2, 3), fill=1)),
     Bad("generator", "not a torch.Generator", st.sampled_from([0, "seed"])))

case(generation.pad_left, lambda: dict(prompts=[[5, 6], [7]], pad_id=0),
     Bad("prompts", "empty, or with an empty prompt", st.sampled_from([[], [[]], [[5], []]])),
     Bad("prompts", "a str", st.text(min_size=1, max_size=5)),
     Bad("prompts", "not lists of integer ids", st.sampled_from([[[5.5]], [["a"]], [5, 6], [[None]]])),
     Bad("pad_id", "not an integer >= 0", st.one_of(st.integers(max_value=-1), st.sampled_from([0.5, "pad", None]))))


# --- post-training: chat template, DPO, GRPO ------------------------------------------------------------------

@functools.cache
def bpe_gpt() -> gpt.GPT:
    """A tiny GPT over BPE's vocabulary (built once: the cases only read it)."""
    return gpt.GPT(gpt.GPTConfig(BPE.vocab_size, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                                 max_position=32, dropout=0.0))


@functools.cache
def chat_pair() -> tuple[gpt.GPT, bpe.ByteLevelBPETokenizer]:
    """``bpe_gpt()`` and BPE made chat-ready by add_chat_tokens (built once)."""
    return posttrain.add_chat_tokens(bpe_gpt(), BPE)


@functools.cache
def tiny_gpt() -> gpt.GPT:
    """A tiny GPT (V = 20) for the cases that only read it."""
    return gpt.GPT(gcfg())


CHAT = [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "a dog"}]
NOT_GPTS = st.sampled_from([bert.BertModel(bcfg()), nn.Linear(2, 2), None, "gpt2"])
NOT_CHAT_TOKENIZERS = st.sampled_from([WP, "gpt2", None])


def role_turn(role: Any) -> list[dict]:
    return [{"role": role, "content": "hi"}, CHAT[1]]


case(posttrain.add_chat_tokens, lambda: dict(model=bpe_gpt(), tokenizer=BPE),
     Bad("model", "not a GPT", NOT_GPTS),
     Bad("model", "vocab_size differs from the tokenizer's", st.just(gpt.GPT(gcfg()))),
     Bad("tokenizer", "not a ByteLevelBPETokenizer", NOT_CHAT_TOKENIZERS))

case(posttrain.render_chat, lambda: dict(messages=list(CHAT), tokenizer=chat_pair()[1]),
     Bad("messages", "a turn with an unknown role", st.sampled_from(["robot", "User", "", None]).map(role_turn)),
     Bad("messages", "a turn whose content is not a str",
         st.sampled_from([3, None, ["a"]]).map(lambda c: [CHAT[0], {"role": "assistant", "content": c}])),
     Bad("messages", "no assistant turn", st.sampled_from([CHAT[:1], [{"role": "system", "content": "be brief"}, CHAT[0]]])),
     Bad("messages", "empty, a str, one dict or not a list of dicts", st.sampled_from([[], "hi", CHAT[0], None, 3, ["hi"]])),
     Bad("tokenizer", "without the chat tokens", st.just(BPE)),
     Bad("tokenizer", "not a ByteLevelBPETokenizer", NOT_CHAT_TOKENIZERS),
     Bad("add_generation_prompt", "not a bool", st.sampled_from([1, "yes", None])))


def pad_chats_args() -> dict:
    tok = chat_pair()[1]
    return dict(rendered=[posttrain.render_chat(CHAT, tok), posttrain.render_chat(CHAT[1:], tok)], pad_id=tok.pad_id,
                max_length=32)


case(posttrain.pad_chats, pad_chats_args,
     Bad("max_length", "shorter than a conversation (the model's max_position)",
         lambda a: st.integers(1, len(a["rendered"][0][0]) - 1)),
     Bad("max_length", "not a positive integer", ints_below(1)),
     Bad("pad_id", "not an integer >= 0", st.one_of(st.integers(max_value=-1), st.sampled_from([0.5, "pad", None]))),
     Bad("rendered", "empty or not a list", st.sampled_from([[], None, 3, "ids", torch.ones(2, 3, dtype=torch.long)])),
     Bad("rendered", "ids and labels of unequal lengths",
         lambda a: st.just([a["rendered"][0], (a["rendered"][1][0], a["rendered"][1][1][:-1])])),
     Bad("rendered", "an element that is not a pair of (T,) integer tensors", st.sampled_from([
         [torch.ones(5, dtype=torch.long)], [(torch.ones(5), torch.ones(5))], [([1, 2], [1, 2])],
         [(torch.ones(2, 3, dtype=torch.long),) * 2], [(torch.ones(3, dtype=torch.long),) * 3]])))

case(posttrain.chat_reply, lambda: dict(model=chat_pair()[0], tokenizer=chat_pair()[1], conversations=[CHAT[:1]] * 2,
                                        max_new_tokens=3),
     Bad("model", "not a GPT", NOT_GPTS),
     Bad("tokenizer", "without the chat tokens", st.just(BPE)),
     Bad("tokenizer", "not a ByteLevelBPETokenizer", NOT_CHAT_TOKENIZERS),
     Bad("conversations", "one conversation, not a list of them", st.sampled_from([CHAT[:1], CHAT])),
     Bad("conversations", "empty or not a list", st.sampled_from([[], "hi", None, 3, ["hi"]])),
     Bad("conversations", "a turn with an unknown role",
         st.sampled_from(["robot", None]).map(lambda r: [CHAT[:1], [{"role": r, "content": "hi"}]])),
     Bad("max_new_tokens", "not a positive integer", ints_below(1)),
     Bad("max_new_tokens", "past max_position", st.integers(40, 100)),
     Bad("temperature", "not a finite number >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("top_k", "not a positive integer", ints_below(1)),
     Bad("top_q", "an unknown sampling option", st.just(0.9)))


def logprob_args() -> dict:
    return dict(model=tiny_gpt(), input_ids=ids(), labels=ids().masked_fill(torch.arange(6) < 3, -100))


LOGPROB_BADS = [
    Bad("model", "not a GPT", NOT_GPTS),
    Bad("input_ids", "not a tensor", NOT_TENSORS),
    Bad("input_ids", "out of [0, vocab_size)", lambda a: with_value(a["input_ids"], ids_outside(V))),
    Bad("labels", "out of [0, vocab_size) and not -100", lambda a: with_value(a["labels"], ids_outside(V, -100))),
    Bad("labels", "shape differs from input_ids", other_shape((2, 6), fill=5)),
    Bad("labels", "not a tensor", NOT_TENSORS)]
case(posttrain.token_logprobs, logprob_args, *LOGPROB_BADS,
     Bad("input_ids", "not (batch, seq_len)", st.sampled_from([ids()[0], ids()[None]]),
         apply=lambda a, x: a.update(input_ids=x, labels=x)),
     Bad("input_ids", "longer than max_position", st.integers(13, 20).map(lambda t: ids(2, t)),
         apply=lambda a, x: a.update(input_ids=x, labels=x)),
     Bad("labels", "floating-point", st.just(torch.full((2, 6), 5.0))),
     Bad("attention_mask", "shape differs from input_ids", other_shape((2, 6), fill=1)),
     Bad("attention_mask", "a row without a real token", st.just(torch.tensor([[1] * 6, [0] * 6]))))
case(posttrain.sequence_logprobs, logprob_args, *LOGPROB_BADS)

LOGPS = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps")
case(posttrain.dpo_loss, lambda: dict({name: torch.randn(3) for name in LOGPS}, beta=0.1),
     *(Bad(name, "not a tensor", NOT_TENSORS) for name in LOGPS),
     *(Bad(name, "shape differs from policy_chosen_logps", other_shape((3,), dtype=torch.float32)) for name in LOGPS[1:]),
     Bad("policy_chosen_logps", "not (batch,)", st.sampled_from([torch.randn(3, 1), torch.tensor(1.0)])),
     Bad("reference_rejected_logps", "integer dtype", st.just(torch.zeros(3, dtype=torch.long))),
     Bad("policy_chosen_logps", "NaN or inf", lambda a: non_finite(a["policy_chosen_logps"])),
     Bad("reference_chosen_logps", "NaN or inf", lambda a: non_finite(a["reference_chosen_logps"])),
     Bad("beta", "not a number > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)))

case(posttrain.dpo_step, lambda: dict(reference=gpt.GPT(gcfg()), beta=0.1),
     Bad("reference", "not a GPT", NOT_GPTS),
     Bad("beta", "not a number > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)))


def dpo_batch_args() -> dict:
    chosen, rejected = ids(), ids().flip(-1)  # differ on every answer position
    answer = torch.arange(6) < 3  # the prompt: no label
    return dict(_reference=tiny_gpt(), model=gpt.GPT(gcfg()),
                batch={"chosen_ids": chosen, "chosen_labels": chosen.masked_fill(answer, -100),
                       "rejected_ids": rejected, "rejected_labels": rejected.masked_fill(answer, -100)})


def same_answers(args: dict, _: Any) -> None:
    args["batch"].update(rejected_ids=args["batch"]["chosen_ids"], rejected_labels=args["batch"]["chosen_labels"])


case(posttrain.dpo_step, dpo_batch_args,
     Bad("batch", "chosen identical to rejected", st.just(None), apply=same_answers, names=("batch", "identical")),
     Bad("batch", "lacks a key", st.sampled_from(["chosen_ids", "rejected_labels"]), apply=drop("batch")),
     Bad("batch", "not a dict", st.sampled_from([[ids()], ids(), None])),
     Bad("batch", "rejected padded to another length", st.integers(1, 9).filter(lambda t: t != 6).map(lambda t: ids(2, t)),
         apply=lambda a, x: a["batch"].update(rejected_ids=x, rejected_labels=x)),
     Bad("batch", "chosen_ids not a (batch, seq_len) tensor", st.one_of(NOT_TENSORS, st.just(ids()[0])),
         apply=put("batch", "chosen_ids")),
     Bad("batch", "labels out of [0, vocab_size)", lambda a: with_value(a["batch"]["chosen_labels"], ids_outside(V, -100)),
         apply=put("batch", "chosen_labels"), names=("labels",)),
     Bad("model", "not a GPT", NOT_GPTS),
     call=lambda a: posttrain.dpo_step(a.pop("_reference"))(**a), label="dpo_step (its step_fn)")

case(posttrain.grpo_advantages, lambda: dict(rewards=torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5]), group_size=3),
     Bad("rewards", "not a tensor", NOT_TENSORS),
     Bad("rewards", "not (batch,)", st.sampled_from([torch.zeros(2, 3), torch.tensor(1.0)])),
     Bad("rewards", "NaN or inf", lambda a: non_finite(a["rewards"])),
     Bad("rewards", "not a whole number of groups", st.integers(1, 11).filter(lambda n: n % 3).map(torch.zeros)),
     Bad("group_size", "not a divisor of the batch", st.sampled_from([4, 5, 7])),
     Bad("group_size", "not a positive integer", ints_below(1)))

case(posttrain.GRPOConfig, dict,
     *(Bad(name, "not a positive integer", ints_below(1))
       for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens")),
     *(Bad(name, "not a number > 0", st.one_of(outside(0, low_open=True), NOT_NUMBERS)) for name in ("lr", "temperature", "clip")),
     Bad("beta", "not a number >= 0", st.one_of(outside(0), NOT_NUMBERS)),
     Bad("advantage", "unknown", st.text(max_size=6).filter(lambda s: s not in ("group", "filter"))))


def grpo_config(**kw: Any) -> posttrain.GRPOConfig:
    return posttrain.GRPOConfig(**{**dict(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=3), **kw})


def rollout_args() -> dict:
    return dict(model=tiny_gpt(), prompts=[[5, 6, 7], [8, 9]], config=grpo_config(), eos_id=4, pad_id=0,
                generator=torch.Generator().manual_seed(0))


NOT_TOKEN_IDS = st.one_of(ids_outside(V), st.sampled_from([2.5, "eos", None]))
NOT_GRPO_CONFIGS = st.sampled_from([None, {"group_size": 2}, gcfg()])
case(posttrain.rollout, rollout_args,
     Bad("model", "not a GPT", NOT_GPTS),
     Bad("config", "not a GRPOConfig", NOT_GRPO_CONFIGS),
     Bad("config", "max_new_tokens past max_position", st.integers(10, 30).map(lambda n: grpo_config(max_new_tokens=n)),
         names=("max_new_tokens",)),
     Bad("prompts", "empty, or not lists of integer ids", st.sampled_from([[], [[]], "abc", [[5.5]], [5, 6], None, 3])),
     Bad("prompts", "ids out of [0, vocab_size)", ids_outside(V).map(lambda i: [[5, i], [8, 9]])),
     Bad("eos_id", "not a token id", NOT_TOKEN_IDS),
     Bad("pad_id", "not a token id", NOT_TOKEN_IDS),
     Bad("generator", "not a torch.Generator", st.sampled_from([0, "seed"])))


def grpo_loss_args() -> dict:
    logps = torch.randn(2, 4)
    return dict(logps=logps, old_logps=logps.clone(), advantages=torch.tensor([1.0, -1.0]),
                labels=torch.tensor([[-100, 5, 6, -100], [-100, 7, -100, -100]]), config=grpo_config(beta=0.1),
                reference_logps=logps - 0.5)


case(posttrain.grpo_loss, grpo_loss_args,
     Bad("logps", "not a tensor", NOT_TENSORS),
     Bad("logps", "not (batch, seq_len)", st.sampled_from([torch.randn(4), torch.randn(2, 4, 1)])),
     Bad("logps", "integer dtype", st.just(torch.zeros(2, 4, dtype=torch.long))),
     Bad("old_logps", "shape differs from logps", other_shape((2, 4), dtype=torch.float32)),
     Bad("labels", "shape differs from logps", other_shape((2, 4), fill=-100)),
     Bad("reference_logps", "shape differs from logps", other_shape((2, 4), dtype=torch.float32)),
     Bad("reference_logps", "None while config.beta > 0", st.just(None)),
     Bad("advantages", "not one per answer", other_shape((2,), dtype=torch.float32)),
     Bad("advantages", "NaN or inf", lambda a: non_finite(a["advantages"])),
     Bad("config", "not a GRPOConfig", NOT_GRPO_CONFIGS))


def zero_reward(indices: list[int], batch: dict) -> torch.Tensor:
    return torch.zeros(len(batch["input_ids"]))


def grpo_train_args() -> dict:
    return dict(model=gpt.GPT(gcfg()), prompts=[[5, 6], [7, 8], [9]], reward_fn=zero_reward, config=grpo_config(),
                eos_id=4, pad_id=0)


case(posttrain.grpo_train, grpo_train_args,
     Bad("model", "not a GPT", NOT_GPTS),
     Bad("config", "not a GRPOConfig", NOT_GRPO_CONFIGS),
     Bad("config", "prompts_per_step > the number of prompts", st.integers(4, 10).map(lambda n: grpo_config(prompts_per_step=n)),
         names=("prompts_per_step",)),
     Bad("prompts", "fewer than prompts_per_step", st.sampled_from([[], [[5]]])),
     Bad("prompts", "not a list", st.sampled_from([None, 3])),
     Bad("prompts", "ids out of [0, vocab_size)", ids_outside(V).map(lambda i: [[i], [i, 5], [5, i]])),
     Bad("reward_fn", "not callable", NOT_CALLABLES),
     Bad("reward_fn", "rewards of the wrong shape, or not a tensor", st.sampled_from([
         lambda i, b: torch.zeros(1), lambda i, b: torch.zeros(len(b["input_ids"]), 2), lambda i, b: [0.0] * len(b["input_ids"])])),
     Bad("reward_fn", "NaN or inf rewards",
         st.sampled_from([NAN, INF, -INF]).map(lambda v: lambda i, b: torch.full((len(b["input_ids"]),), v))),
     Bad("eos_id", "not a token id", NOT_TOKEN_IDS),
     Bad("pad_id", "not a token id", NOT_TOKEN_IDS),
     Bad("seed", "not an integer >= 0", st.sampled_from([-1, 2.5, "0", None])))


# --- tokenizers ------------------------------------------------------------------------------------------

case(base.Tokenizer, lambda: dict(vocab=["a", "b"]),
     Bad("vocab", "duplicate tokens", st.sampled_from([["a", "a"], ["a", "b", "a"]])),
     Bad("vocab", "a str or not strings", st.sampled_from(["abc", [1, 2], None, [["a"]]])),
     label="Tokenizer.__init__")

for tok in (WP, BPE):
    name = type(tok).__name__
    case(base.Tokenizer, lambda tok=tok: dict(_self=tok, text="the cat"),
         Bad("text", "not a str", NOT_TEXTS),
         Bad("pair", "not a str", NOT_TEXTS.filter(lambda p: p is not None)),
         Bad("max_length", "too small or not an integer", st.one_of(ints_below(1), st.just(2.5))),
         Bad("padding", "unknown", st.sampled_from(["max", "yes", 2])),
         Bad("padding", "'max_length' without max_length", st.just("max_length")),
         call=method("encode"), label=f"Tokenizer.encode ({name})")
    case(base.Tokenizer, lambda tok=tok: dict(_self=tok, texts=["the cat", "a dog"]),
         Bad("texts", "a single str", st.text(max_size=5)),
         Bad("texts", "empty", st.sampled_from([[], ()])),
         Bad("texts", "not all str", st.sampled_from([["a", 3], [None], [b"x"]])),
         Bad("pairs", "not one per text", st.sampled_from([["x"], ["x", "y", "z"], []])),
         Bad("return_tensors", "unknown", st.sampled_from(["np", "tf", 1])),
         Bad("padding", "unknown", st.sampled_from(["max", 2])),
         call=method("encode_batch"), label=f"Tokenizer.encode_batch ({name})")
    case(base.Tokenizer, lambda tok=tok: dict(_self=tok, ids=[2, 5, 3]),
         Bad("ids", "out of [0, vocab_size)", ids_outside(tok.vocab_size).map(lambda i: [2, i])),
         Bad("ids", "not 1-D", st.sampled_from([torch.ones(2, 3, dtype=torch.long), np.ones((2, 2), dtype=int)])),
         Bad("ids", "not integer ids", st.sampled_from([[2.5], ["a"], "abc", [None]])),
         call=method("decode"), label=f"Tokenizer.decode ({name})")
case(base.Tokenizer, lambda: dict(_self=WP, i=3),
     Bad("i", "out of [0, vocab_size) (a documented IndexError)", ids_outside(WP.vocab_size),
         names=("token id",), raises=(IndexError,)),
     Bad("i", "not an integer", st.sampled_from(["a", None, 2.5]), names=("token id",)),
     call=method("id_to_token"), label="Tokenizer.id_to_token")
case(base.Tokenizer, lambda: dict(_self=WP, token="cat"),
     Bad("token", "not a str", st.sampled_from([3, None, ["cat"]])), call=method("token_to_id"), label="Tokenizer.token_to_id")

NOT_JSON = write("tok/not_json.json", "{ not json")
OTHER_FORMAT = write("tok/other.json", json.dumps({"format": "other", "version": 1, "vocab": []}))
case(base.Tokenizer, lambda: dict(_self=wordpiece.WordPieceTokenizer, path=str(NOT_JSON)),
     Bad("path", "missing", MISSING, raises=(FileNotFoundError,), names=(VALUE,)),
     Bad("path", "not a tokenizer file", st.sampled_from([NOT_JSON, OTHER_FORMAT]).map(str), names=(VALUE,)),
     Bad("path", "not a path", NOT_PATHS),
     call=method("load"), label="Tokenizer.load")

case(wordpiece.WordPieceTokenizer, lambda: dict(vocab=list(wordpiece.SPECIAL_TOKENS) + ["a"]),
     Bad("vocab", "lacks a special token", st.sampled_from(wordpiece.SPECIAL_TOKENS).map(
         lambda t: [s for s in wordpiece.SPECIAL_TOKENS if s != t] + ["a"])),
     label="WordPieceTokenizer.__init__")

for cls, least in ((wordpiece.WordPieceTokenizer, 6), (bpe.ByteLevelBPETokenizer, 257)):
    case(cls, lambda cls=cls, least=least: dict(_self=cls, texts=TEXTS[:3], vocab_size=least + 20),
         Bad("texts", "a single str", st.text(max_size=5)),
         Bad("texts", "no words", st.sampled_from([[], [""], ["   "]] if cls is wordpiece.WordPieceTokenizer else [[], [""]])),
         Bad("texts", "not all str", st.sampled_from([["a b", 3], [None], [b"x"]])),
         Bad("texts", "not iterable", st.sampled_from([3, None])),
         Bad("vocab_size", "too small for the specials (and bytes)", ints_below(least)),
         Bad("min_frequency", "not a positive integer", ints_below(1)),
         call=method("train"), label=f"{cls.__name__}.train")

case(wordpiece.WordPieceTokenizer, lambda: dict(_self=wordpiece.WordPieceTokenizer, texts=TEXTS[:3], vocab_size=60),
     Bad("scoring", "unknown", st.text(max_size=6).filter(lambda s: s not in ("frequency", "likelihood"))),
     call=method("train"), label="WordPieceTokenizer.train (scoring)")

case(wordpiece.normalize_and_pretokenize, lambda: dict(text="Hello, world!"), Bad("text", "not a str", NOT_TEXTS))

BYTES = list(bpe.bytes_to_unicode().values())
case(bpe.ByteLevelBPETokenizer, lambda: dict(vocab=["<|endoftext|>", *BYTES], merges=[]),
     Bad("special_tokens", "empty or not in vocab", st.sampled_from([(), ["<|pad|>"]])),
     Bad("vocab", "lacks a byte symbol", st.sampled_from(BYTES[:5]).map(lambda b: ["<|endoftext|>", *(c for c in BYTES if c != b)])),
     Bad("merges", "make pieces not in vocab", st.just([("a", "b")])),
     Bad("merges", "not pairs of str", st.sampled_from([[("a",)], ["ab"], [3], [("a", "b", "c")]])),
     label="ByteLevelBPETokenizer.__init__")

case(merges.learn_merges, lambda: dict(words={("a", "b"): 3, ("b", "c"): 2}, max_symbols=10),
     Bad("words", "not a dict of symbol tuples to counts", st.sampled_from([["ab"], "ab", None, {3: 3}])),
     Bad("words", "a count that is not a positive integer", st.sampled_from([0, -2, 1.5, "3"]).map(lambda c: {("a", "b"): c})),
     Bad("max_symbols", "not a positive integer", ints_below(1)),
     Bad("max_symbols", "smaller than the alphabet", st.integers(1, 2)),
     Bad("min_frequency", "not a positive integer", ints_below(1)),
     Bad("scoring", "unknown", st.text(max_size=6).filter(lambda s: s not in ("frequency", "likelihood"))),
     Bad("join", "not callable", st.sampled_from(["+", 3])))


# --- metrics -----------------------------------------------------------------------------------------------

def pred_label_bads() -> list[Bad]:
    return [
        Bad("labels", "length differs from preds", st.integers(0, 6).filter(lambda n: n != 4).map(lambda n: [0] * n)),
        Bad("preds", "empty", st.just([]), apply=lambda a, _: a.update(preds=[], labels=[]), names=("preds", "labels")),
        Bad("preds", "non-integer floats", st.sampled_from([[0.5, 1, 0, 1], [NAN, 1, 0, 1]])),
        Bad("preds", "logits with NaN or inf", st.sampled_from([NAN, INF]).map(lambda x: [[0.1, x], [1, 0], [0, 1], [1, 0]])),
        Bad("preds", "strings", st.just(["a", "b", "c", "d"])),
        Bad("labels", "ragged", st.just([[0, 1], [1]]), apply=lambda a, v: a.update(preds=[[0, 1], [1]], labels=v),
            names=("preds", "labels")),
        Bad("ignore_index", "every label ignored", st.just(None), apply=lambda a, _: a.update(labels=[-100] * 4)),
    ]


case(classification.accuracy, lambda: dict(preds=[0, 1, 1, 0], labels=[0, 1, 0, 0]), *pred_label_bads())
case(classification.precision_recall_f1, lambda: dict(preds=[0, 1, 1, 0], labels=[0, 1, 0, 0]),
     *pred_label_bads(),
     Bad("average", "unknown", st.text(max_size=6).filter(lambda s: s not in ("macro", "micro", "weighted"))),
     Bad("num_classes", "not a positive integer", ints_below(1)),
     Bad("num_classes", "smaller than an id", st.just(1)))
case(classification.confusion_matrix, lambda: dict(preds=[0, 1, 1, 0], labels=[0, 1, 0, 0]),
     *pred_label_bads(),
     Bad("labels", "negative ids without num_classes", st.integers(-99, -1).map(lambda i: [0, 1, i, 0])),
     Bad("num_classes", "smaller than an id", st.just(1)))

case(classification.bio_entities, lambda: dict(tags=["B-PER", "I-PER", "O"]),
     Bad("tags", "a tag that is not BIO", st.sampled_from(["X", "O-PER", "b-per", "PER"]).map(lambda t: ["O", t])),
     Bad("tags", "a tag that is not a str", st.sampled_from([3, None, ["O"]]).map(lambda t: ["O", t])),
     Bad("tags", "a single str", st.sampled_from(["B-PER", "O"])),
     Bad("tags", "not iterable", st.sampled_from([3, None])))

case(classification.entity_f1, lambda: dict(pred_tag_seqs=[["B-PER", "O"]], gold_tag_seqs=[["B-PER", "O"]]),
     Bad("gold_tag_seqs", "another number of sentences", st.integers(2, 4).map(lambda n: [["O", "O"]] * n)),
     Bad("gold_tag_seqs", "a sentence of another length", st.integers(0, 5).filter(lambda n: n != 2).map(lambda n: [["O"] * n])),
     Bad("pred_tag_seqs", "empty", st.just([]), apply=lambda a, _: a.update(pred_tag_seqs=[], gold_tag_seqs=[])),
     Bad("pred_tag_seqs", "a tag that is not BIO", st.sampled_from(["X", "PER"]).map(lambda t: [["B-PER", t]])),
     Bad("pred_tag_seqs", "ids without id2label", st.just(torch.tensor([[1, 0]]))),
     Bad("id2label", "an id it does not map", st.sampled_from([["O"], {0: "O"}]),
         apply=lambda a, m: a.update(pred_tag_seqs=[[1, 0]], gold_tag_seqs=[[0, 0]], id2label=m)),
     Bad("pred_tag_seqs", "a single str", st.just("B-PER")))

case(language.perplexity, lambda: dict(mean_nll=1.0),
     Bad("mean_nll", "NaN or negative", st.one_of(st.just(NAN), st.floats(max_value=-1e-3))),
     Bad("mean_nll", "not a number", st.sampled_from(["1.0", None, [1.0]])),
     Bad("mean_nll", "a tensor of more than one number", st.integers(2, 5).map(lambda n: torch.ones(n))))

case(language.bleu, lambda: dict(hypotheses=["a cat sat ."], references=[["a cat sat ."]]),
     Bad("references", "not one list per hypothesis", st.sampled_from([[], [["a"], ["b"]]])),
     Bad("hypotheses", "empty", st.just([]), apply=lambda a, _: a.update(hypotheses=[], references=[]),
         names=("hypotheses", "references")),
     Bad("hypotheses", "a single str", st.just("a cat sat .")),
     Bad("references", "a single str", st.just("a cat sat .")),
     Bad("references", "a hypothesis without references", st.sampled_from([[[]], ["a cat sat ."]])),
     Bad("hypotheses", "not all str", st.sampled_from([[3], [None], [["a"]]])),
     Bad("references", "not all str", st.sampled_from([[[3]], [[None]], [[["a"]]]])))

case(language.bleu_tokenize, lambda: dict(text="a cat ."), Bad("text", "not a str", NOT_TEXTS))


# --- multi-stage -----------------------------------------------------------------------------------------------

def wp_bert() -> bert.BertForPreTraining:
    return bert.BertForPreTraining(bert.BertConfig(WP.vocab_size, hidden_size=8, num_layers=1, num_heads=2,
                                                   intermediate_size=16, max_position=64))


case(adapt.new_words, lambda: dict(new_texts=["a purr b"], old_texts=["a b"], tokenizer=WP),
     Bad("new_texts", "a single str", st.text(min_size=1, max_size=5)),
     Bad("old_texts", "a single str", st.text(min_size=1, max_size=5)),
     Bad("new_texts", "not all str", st.sampled_from([[3], [None]])),
     Bad("tokenizer", "not a tokenizer", st.sampled_from([None, "wordpiece", 3])),
     Bad("min_count", "not a positive integer", ints_below(1)))

case(adapt.extend_vocabulary, lambda: dict(model=wp_bert(), tokenizer=WP, words=["purr"]),
     Bad("words", "a single str", st.text(min_size=1, max_size=5)),
     Bad("words", "not single words", st.sampled_from([["two words"], [""], ["##ing"], [" cat"]])),
     Bad("words", "not all str", st.sampled_from([[3], [None]])),
     Bad("tokenizer", "not a WordPieceTokenizer", st.sampled_from([None, BPE, "wordpiece"])),
     Bad("model", "not a BertForPreTraining", st.sampled_from([None, nn.Linear(2, 2)])),
     Bad("model", "vocabulary differs from the tokenizer's", st.just(bert.BertForPreTraining(bcfg()))))

case(adapt.continue_pretraining,
     lambda: dict(model=wp_bert(), tokenizer=WP, documents=[TEXTS[:3], TEXTS[3:6]], steps=1),
     Bad("steps", "not a positive integer", ints_below(1)),
     Bad("batch_size", "not a positive integer", ints_below(1)),
     Bad("documents", "a single str", st.just("the cat sat .")),
     Bad("documents", "no document with 2 sentences", st.sampled_from([[], [["a"]]])),
     Bad("tokenizer", "not a WordPieceTokenizer", st.sampled_from([None, "wordpiece"])),
     Bad("model", "not a BertForPreTraining", st.sampled_from([None, nn.Linear(2, 2)])),
     Bad("lr", "not > 0", outside(0, low_open=True)))

case(curriculum.Curriculum, lambda: dict(stages=[([1, 2], 3)]),
     Bad("stages", "empty", st.sampled_from([[], ()])),
     Bad("stages", "a stage that is not (data, steps)", st.sampled_from([[[1, 2]], [([1], 2, 3)], [3], "ab"])),
     Bad("stages", "steps not a positive integer", ints_below(1).map(lambda s: [([1, 2], s)])),
     Bad("stages", "data not iterable", st.sampled_from([3, None]).map(lambda d: [(d, 2)])),
     label="Curriculum.__init__")

case(curriculum.growing_pools, lambda: dict(data=labeled(), difficulty=[3, 1, 2, 0]),
     Bad("difficulty", "not one per row", st.integers(0, 6).filter(lambda n: n != 4).map(lambda n: list(range(n)))),
     Bad("difficulty", "NaN", st.sampled_from([NAN, INF]).map(lambda x: [0, x, 1, 2])),
     Bad("difficulty", "not numbers", st.sampled_from([["a", "b", "c", "d"], None])),
     Bad("fractions", "not increasing within (0, 1]", st.sampled_from([(), (0.5, 0.2), (0, 1), (0.5, 1.5), (NAN,)])),
     Bad("data", "not a TensorDataset", st.sampled_from([[1, 2, 3, 4], {"input_ids": ids(4, 3)}, None])))

case(layerwise.layerwise_loss,
     lambda: dict(layer_logits=torch.randn(3, 4, 5), labels=torch.tensor([0, 4, 2, 1]), weights=torch.tensor([0.0, 0.5, 1.0])),
     Bad("layer_logits", "not (heads, batch, classes)", other_shape((3, 4, 5), dtype=torch.float32, ok=lambda s: len(s) != 3)),
     Bad("layer_logits", "NaN or inf", lambda a: non_finite(a["layer_logits"])),
     Bad("labels", "out of [0, classes)", lambda a: with_value(a["labels"], ids_outside(5))),
     Bad("labels", "not one per row", other_shape((4,))),
     Bad("weights", "not one per head", other_shape((3,), dtype=torch.float32)),
     Bad("weights", "NaN or inf", lambda a: non_finite(a["weights"])))

case(layerwise.LayerwiseClassifier, lambda: dict(config_or_bert=bcfg(), num_labels=3),
     Bad("layers", "not increasing indices in [0, L]", st.sampled_from([[], [1, 0], [0, 3], [-1], [1, 1]])),
     Bad("weights", "not one non-negative number per layer", st.sampled_from([[1.0], [1, -1, 1], [0, 0, 0], [NAN, 1, 1], [INF, 1, 1]])),
     Bad("num_labels", "not an integer >= 2", ints_below(2)),
     Bad("dropout", "not a probability", outside(0, 1)),
     Bad("config_or_bert", "neither a BertConfig nor a BertModel", st.sampled_from([tcfg(), None])),
     label="LayerwiseClassifier.__init__")

case(layerwise.LayerwiseClassifier,
     lambda: dict(_self=layerwise.LayerwiseClassifier(bcfg(), 3), **tiny_bert_input(), labels=torch.tensor([0, 2])),
     Bad("labels", "out of [0, num_labels)", lambda a: with_value(a["labels"], ids_outside(3))),
     Bad("labels", "not one per sequence", other_shape((2,))),
     Bad("input_ids", "not a tensor (with labels)", NOT_TENSORS),
     Bad("attention_mask", "a row without a real token", st.just(torch.tensor([[1] * 6, [0] * 6]))),
     call=method("__call__"), label="LayerwiseClassifier.forward")

case(layerwise.layer_accuracies, lambda: dict(model=layerwise.LayerwiseClassifier(bcfg(), 2), data=labeled()),
     Bad("model", "not a LayerwiseClassifier", st.sampled_from([finetune.BertForSequenceClassification(bcfg(), 2), None])),
     Bad("data", "not a TensorDataset", st.sampled_from([[1, 2], {"input_ids": ids()}, None])))

case(multitask.MultiTaskModel, lambda: dict(bert=bert.BertModel(bcfg()), heads={"a": ("sequence", 2)}),
     Bad("heads", "empty", st.sampled_from([{}, []])),
     Bad("heads", "an unknown kind", st.text(max_size=6).filter(lambda k: k not in ("sequence", "token")).map(
         lambda k: {"a": (k, 2)})),
     Bad("heads", "not (kind, num_labels) pairs", st.sampled_from([{"a": "sequence"}, {"a": ("sequence",)}, ["a"]])),
     Bad("num_labels", "not an integer >= 2", ints_below(2).map(lambda n: {"a": ("sequence", n)}), apply=put("heads")),
     Bad("bert", "not a BertModel", st.sampled_from([bcfg(), None, gpt.GPT(gcfg())])),
     label="MultiTaskModel.__init__")

case(multitask.MultiTaskModel,
     lambda: dict(_self=multitask.MultiTaskModel(bert.BertModel(bcfg()), {"a": ("sequence", 2)}), task="a", **tiny_bert_input()),
     Bad("task", "unknown (a documented KeyError)", st.text(max_size=5).filter(lambda t: t != "a"),
         names=("unknown task",), raises=(KeyError,)),
     call=method("__call__"), label="MultiTaskModel.forward")

case(multitask.MultiTaskBatches, lambda: dict(datasets={"a": labeled(), "b": labeled(6)}),
     Bad("datasets", "empty", st.sampled_from([{}, []])),
     Bad("datasets", "not TensorDatasets", st.sampled_from([{"a": [1, 2]}, {"a": None}, ["a"]])),
     Bad("batch_size", "not a positive integer", ints_below(1)),
     Bad("temperature", "not > 0", st.one_of(outside(0, low_open=True, high_open=False), NOT_NUMBERS)),
     Bad("batches_per_pass", "not a positive integer", ints_below(1)),
     label="MultiTaskBatches.__init__")

case(multitask.task_probabilities, lambda: dict(sizes={"a": 10, "b": 3}),
     Bad("sizes", "empty", st.sampled_from([{}, []])),
     Bad("sizes", "a size that is not a positive integer", st.sampled_from([0, -3, 2.5, NAN, "4"]).map(lambda n: {"a": 10, "b": n})),
     Bad("sizes", "not a dict", st.sampled_from([[10, 3], None, 10])),
     Bad("temperature", "not > 0", st.one_of(outside(0, low_open=True, high_open=False), NOT_NUMBERS)))

case(multitask.multitask_step_fn, lambda: dict(weights={"a": 1.0}),
     Bad("weights", "not a dict", st.sampled_from([[1.0], 1.0, "a"])),
     Bad("weights", "a weight that is not a finite number >= 0",
         st.one_of(outside(0), NOT_NUMBERS).map(lambda w: {"a": 1.0, "b": w})))


def identity_stage(m: nn.Module) -> nn.Module:
    return m


case(pipeline.run_stages, lambda: dict(model=nn.Linear(2, 2), stages=[("a", identity_stage)], progress=False),
     Bad("stages", "names that repeat", st.just([("a", identity_stage), ("a", identity_stage)])),
     Bad("stages", "a stage that is not (name, function)", st.sampled_from([[identity_stage], [("a",)], ["a"], "ab"])),
     Bad("stages", "a function that is not callable", st.sampled_from([3, "f"]).map(lambda f: [("a", f)])),
     Bad("stages", "a stage that returns no nn.Module", st.sampled_from([None, 3]).map(lambda r: [("a", lambda m: r)])),
     Bad("model", "not an nn.Module", NOT_MODULES))

case(pipeline.size_on_disk, lambda: dict(model=nn.Linear(2, 2)), Bad("model", "not an nn.Module", NOT_MODULES))

case(pipeline.latencies, lambda: dict(models={"m": nn.Linear(2, 2)}, inputs={"input": torch.ones(1, 2)}, repeats=1, warmup=0),
     Bad("repeats", "not a positive integer", ints_below(1)),
     Bad("warmup", "not an integer >= 0", ints_below(0)),
     Bad("models", "not a dict of nn.Modules", st.sampled_from([{"m": None}, [nn.Linear(2, 2)], None])),
     Bad("inputs", "neither a dict nor a function", st.sampled_from([[torch.ones(1, 2)], None, 3])))

case(prune.magnitude_masks, lambda: dict(weights={"a": torch.randn(3, 4), "b": torch.randn(5)}, amount=0.5),
     Bad("amount", "not in [0, 1]", st.one_of(outside(0, 1, high_open=False), NOT_NUMBERS)),
     Bad("scope", "unknown", st.text(max_size=6).filter(lambda s: s not in ("global", "layer"))),
     Bad("weights", "empty", st.sampled_from([{}, []])),
     Bad("weights", "not a dict of tensors", st.sampled_from([{"a": [1.0, 2.0]}, {"a": None}, [torch.ones(2)]])))


def masks_args() -> dict:
    model = bert.BertModel(bcfg())
    return dict(model=model, masks=prune.magnitude_masks(prune.prunable_weights(model), 0.5))


case(prune.apply_masks, masks_args,
     Bad("masks", "a name that is no prunable weight (a documented KeyError)", st.just({"nope.weight": torch.ones(2)}),
         names=("no prunable weight",), raises=(KeyError,)),
     Bad("masks", "a mask of another shape", st.integers(1, 5).map(lambda n: {"0.attn.q_proj.weight": torch.ones(n, 3)})),
     Bad("masks", "not a dict of tensors", st.sampled_from([[torch.ones(2)], None, {"0.attn.q_proj.weight": 1.0}])),
     Bad("model", "holds no BertModel or GPT", st.just(nn.Linear(2, 2))))

for keep, size in ((prune.keep_rows, 3), (prune.keep_columns, 4)):
    case(keep, lambda: dict(linear=nn.Linear(4, 3), index=torch.tensor([0, 2])),
         Bad("index", "out of range", ids_outside(size).map(lambda i: torch.tensor([0, i]))),
         Bad("index", "not an integer tensor", st.sampled_from([torch.tensor([0.0, 1.0]), [0, 1], torch.tensor([True, False])])),
         Bad("index", "empty", st.just(torch.tensor([], dtype=torch.long))),
         Bad("linear", "not an nn.Linear", st.sampled_from([None, nn.Conv1d(2, 2, 1), torch.ones(3, 4)])))

for prune_fn, arg, total in ((prune.prune_heads, "heads", 2), (prune.prune_neurons, "neurons", 16)):
    case(prune_fn, lambda arg=arg: dict(model=bert.BertModel(bcfg()), **{arg: {0: [0]}}),
         Bad(arg, "a unit out of range", ids_outside(total).map(lambda i: {0: [i]})),
         Bad(arg, "every unit of a layer", st.just({0: list(range(total))})),
         Bad(arg, "a layer out of range", ids_outside(2).map(lambda i: {i: [0]})),
         Bad(arg, "not a dict of lists", st.sampled_from([[0], None, {0: 1}, {"0": [0]}])),
         Bad("model", "holds no BertModel or GPT", st.just(nn.Linear(2, 2))))


def importance_args() -> dict:
    return dict(model=finetune.BertForSequenceClassification(bcfg(), 2),
                batches=[{**tiny_bert_input(), "labels": torch.tensor([0, 1])}], loss_fn=finetune.classification_step)


case(prune.structured_importance, importance_args,
     Bad("batches", "empty", st.sampled_from([[], ()])),
     Bad("loss_fn", "not callable", NOT_CALLABLES),
     Bad("model", "holds no BertModel or GPT", st.just(nn.Linear(2, 2))))

case(prune.lowest, lambda: dict(scores=[torch.tensor([0.3, 0.1, 0.2])], fraction=0.5),
     Bad("fraction", "not in [0, 1)", st.one_of(outside(0, 1), NOT_NUMBERS)),
     Bad("scores", "not a list of 1-D tensors", st.sampled_from([[[0.3, 0.1]], None, [torch.ones(2, 2)]])))


# --- real-data loaders -------------------------------------------------------------------------------------------

BAD_FILES = {
    loaders.load_sst2: write("sst2/train.tsv", "sentence\tlabel\ngood film\t7\n"),
    loaders.load_ag_news: write("ag/train.csv", '"9","title","text"\n'),
    loaders.load_mnli: write("mnli/train.tsv", "sentence1\tsentence2\tgold_label\na\tb\tmaybe\n"),
    loaders.load_conll2003: write("conll/train.txt", "EU NNP B-NP B-ORG\nrejects\n"),
    conllu.load_conllu: write("ud/x-ud-train.conllu", "1\tword\n"),
}
(TMP / "empty").mkdir()
for loader in (loaders.load_sst2, loaders.load_ag_news, loaders.load_imdb, loaders.load_mnli, loaders.load_conll2003,
               loaders.load_wikitext2, conllu.load_conllu, conllu.load_ud_english_ewt):
    bads = [Bad("path", "missing", MISSING, raises=(FileNotFoundError,), names=(VALUE,)),
            Bad("path", "a folder without the dataset's files", st.just(str(TMP / "empty")), raises=(FileNotFoundError,),
                names=(VALUE,)),
            Bad("path", "not a path", NOT_PATHS.filter(lambda p: p is not None))]
    if loader in BAD_FILES:
        bads.append(Bad("path", "a malformed file", st.just(str(BAD_FILES[loader])), names=(VALUE,)))
    case(loader, lambda: dict(path=None), *bads)

case(conllu.read_conllu, lambda: dict(file=None),
     Bad("file", "missing", MISSING, raises=(FileNotFoundError,), names=(VALUE,)),
     Bad("file", "not a path", st.sampled_from([["a.conllu"], 2.5, None])))
case(conllu.parse_conllu, lambda: dict(lines=["1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_"]),
     Bad("lines", "a single str", st.just("1\tThe\tthe\tDET\t_\t_\t2\tdet\t_\t_")),
     Bad("lines", "not iterable", st.sampled_from([3, None])),
     Bad("lines", "a line without ten columns", st.integers(1, 9).map(lambda n: ["\t".join(["1"] * n)]), names=("line 1",)),
     Bad("lines", "an unknown UPOS tag", st.just(["1\tThe\tthe\tARTICLE\t_\t_\t2\tdet\t_\t_"]), names=("line 1",)))


# --- what is deliberately accepted ---------------------------------------------------------------------------------

def _accept_empty_mask_batch() -> None:
    inputs, labels = masking.mask_tokens(torch.zeros(0, 6, dtype=torch.long), vocab_size=V, mask_id=4, special_ids=[0])
    assert inputs.shape == labels.shape == (0, 6)


def _accept_no_mlm_target() -> None:
    assert bert.mlm_loss(torch.randn(2, 3, V), torch.full((2, 3), -100)).item() == 0.0
    assert bert.mlm_loss(torch.randn(0, V), torch.zeros(0, dtype=torch.long)).item() == 0.0


def _accept_nan_mlm_logits() -> None:
    """mlm_loss does not scan its (M, V) logits for NaN on every step (the largest tensor of a
    pretraining step): a NaN loss comes out, and mlstep.train stops on it with a FloatingPointError."""
    logits = torch.randn(2, 3, V)
    logits[0, 0, 0] = NAN
    assert torch.isnan(bert.mlm_loss(logits, torch.full((2, 3), 4)))


def _accept_distillation_without_rows_or_labels() -> None:
    assert distill.soft_target_loss(torch.randn(0, 5), torch.randn(0, 5)).item() == 0.0
    loss = distill.distillation_loss(torch.randn(3, 5), torch.randn(3, 5), torch.full((3,), -100))
    assert torch.isfinite(loss)


def _accept_masked_logits() -> None:
    logits = torch.randn(2, V)
    logits[:, :5] = -INF  # tokens ruled out by the caller
    assert (generation.filter_logits(logits, top_k=3)[:, :5] == -INF).all()
    assert (generation.sample_next(logits, generator=torch.Generator().manual_seed(0)) >= 5).all()
    assert generation.filter_logits(logits, top_k=10 * V).shape == (2, V)  # top_k beyond V keeps them all


ACCEPTED: dict[str, Callable[[], bool | None]] = {
    "mask_tokens: an empty batch gives empty inputs and labels": _accept_empty_mask_batch,
    "mlm_loss: no target (all -100, or no row) is a loss of 0, not NaN": _accept_no_mlm_target,
    "mlm_loss: NaN logits give a NaN loss (train() refuses it), not a per-step scan": _accept_nan_mlm_logits,
    "soft_target_loss / distillation_loss: no row, or no label, is a finite loss": _accept_distillation_without_rows_or_labels,
    "filter_logits / sample_next: -inf logits (ruled-out tokens) and top_k > V": _accept_masked_logits,
    "perplexity: an infinite loss (a diverged run) is an infinite perplexity": lambda: language.perplexity(INF) == INF,
    "learn_merges: no words learn nothing": lambda: merges.learn_merges({}, 10) == ([], []),
    "pack_words: an empty batch packs to an empty batch": lambda: [t.shape[0] for t in crf.pack_words(
        torch.zeros(0, 3, 2), torch.zeros(0, 3, dtype=torch.bool))] == [0, 0],
    "latencies: no model, no time": lambda: pipeline.latencies({}, {}) == {},
    "task_probabilities: temperature=inf is uniform": lambda: multitask.task_probabilities(
        {"a": 1, "b": 99}, math.inf) == {"a": 0.5, "b": 0.5},
    "bleu: hypotheses shorter than four tokens score 0": lambda: language.bleu(["a b"], [["a b"]]) == 0.0,
    "bio_entities / entity_f1: no tag, no entity, scores 0": lambda: (classification.bio_entities([]) == set()
                                                                     and classification.entity_f1([[]], [[]])["f1"] == 0.0),
    "decode: no ids is the empty text": lambda: WP.decode([]) == "" == BPE.decode([]),
    "encode: the empty text is [CLS] [SEP]": lambda: WP.encode("").ids == [WP.cls_id, WP.sep_id],
    "nsp_pairs: empty documents among 2 non-empty ones are skipped": lambda: len(masking.nsp_pairs(
        [["a", "b"], [], ["c"]])) == 1,
    "magnitude_masks: amount 0 keeps every weight, 1 none": lambda: (
        prune.magnitude_masks({"w": torch.randn(3)}, 0.0)["w"].sum() == 3
        and prune.magnitude_masks({"w": torch.randn(3)}, 1.0)["w"].sum() == 0),
    "accuracy: logits (..., C) against labels (...) are argmaxed": lambda: classification.accuracy(
        [[0.1, 0.9], [0.8, 0.2]], [1, 0]) == 1.0,
    "add_chat_tokens: a tokenizer that has the chat tokens already gains none": lambda: (
        posttrain.add_chat_tokens(*chat_pair())[1].vocab_size == chat_pair()[1].vocab_size),
    "grpo_advantages: group_size=1 (no group to compare with) gives advantages of 0": lambda: (
        posttrain.grpo_advantages(torch.tensor([1.0, 0.0]), 1) == 0).all().item(),
}


# --- what is not tested here -------------------------------------------------------------------------------------

RESULT = "a NamedTuple of results that the package builds and returns; nothing to refuse"
SKIPPED: dict[str, str] = {
    "mlstep.transformer.Backbone": RESULT,
    "mlstep.transformer.ClassifierOutput": RESULT,
    "mlstep.bert.BertOutput": RESULT,
    "mlstep.bert.PreTrainingOutput": RESULT,
    "mlstep.gpt.GPTOutput": RESULT,
    "mlstep.distill.InitReport": RESULT,
    "mlstep.multistage.layerwise.LayerwiseOutput": RESULT,
    "mlstep.train.History": "a dataclass of records that train() returns; series() of an unknown name is a KeyError "
                            "(tests/test_train.py)",
    "mlstep.tokenizers.base.Encoding": "a frozen dataclass that encode() returns",
    "mlstep.tokenizers.bpe.bytes_to_unicode": "takes no argument",
    "mlstep.transformer.norm_layer": "takes only a config (chapter 12's RMSNorm or LayerNorm), like the constructors of "
                                     "MultiHeadAttention, FeedForward, TransformerBlock, Transformer, BertEmbeddings",
    "mlstep.tokenizers.wordpiece.SPECIAL_TOKENS": "a constant",
    "mlstep.tokenizers.bpe.GPT2_PATTERN": "a constant",
    "mlstep.data.loaders.AG_NEWS_LABELS": "a constant",
    "mlstep.data.loaders.CONLL2003_TAGS": "a constant",
    "mlstep.data.conllu.UPOS_TAGS": "a constant",
    "mlstep.posttrain.ROLE_TOKENS": "a constant",
    "mlstep.posttrain.END_OF_TURN": "a constant",
}


# --- the tests -------------------------------------------------------------------------------------------------------

def public_names() -> dict[str, Any]:
    """``{qualified name: object}`` of every name in a walked module's ``__all__`` (a re-export
    counts once, under the module that defines it)."""
    found = {}
    for module_name in WALKED:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            home = getattr(obj, "__module__", None) if callable(obj) else None
            found[f"{home}.{obj.__qualname__}" if home and home.startswith("mlstep") else f"{module_name}.{name}"] = obj
    return found


def test_every_public_name_is_covered_or_skipped():
    names = public_names()
    covered = {id(c.target) for c in CASES}
    missing = [q for q, obj in names.items() if id(obj) not in covered and q not in SKIPPED]
    assert not missing, f"public names neither in CASES nor in SKIPPED (with a reason): {missing}"
    both = [q for q, obj in names.items() if id(obj) in covered and q in SKIPPED]
    assert not both, f"covered and skipped at once: {both}"
    stale = set(SKIPPED) - set(names)
    assert not stale, f"SKIPPED names no public name: {stale}"
    assert all(c.bad for c in CASES), [c.label for c in CASES if not c.bad]


MUTATIONS = [pytest.param(c, b, id=f"{c.label}-{b.arg}-{b.what}") for c in CASES for b in c.bad]
EXAMPLES: dict[str, int] = {}


def innermost_file(exc: BaseException) -> pathlib.Path:
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return pathlib.Path(tb.tb_frame.f_code.co_filename).resolve()


def assert_clear(exc: BaseException, names: tuple[str, ...]) -> None:
    """The message names one of ``names`` as a whole word, and mlstep itself raised it."""
    message = str(exc)
    assert any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", message) for n in names), (
        f"{type(exc).__name__} does not name {' or '.join(names)}: {message}")
    where = innermost_file(exc)
    assert where.is_relative_to(PACKAGE), f"raised inside {where}, not by mlstep: {type(exc).__name__}: {message}"


@pytest.mark.parametrize("c, bad", MUTATIONS)
@SETTINGS
@given(data=st.data())
def test_bad_input_is_refused_clearly(c: Case, bad: Bad, data: st.DataObject):
    args = c.build()
    strategy = bad.values if isinstance(bad.values, st.SearchStrategy) else bad.values(args)
    value = data.draw(strategy, label=bad.arg)
    (bad.apply or put(bad.arg))(args, value)
    names = tuple(str(value) if n == VALUE else n for n in bad.names or (bad.arg,))
    EXAMPLES[f"{c.label}-{bad.arg}-{bad.what}"] = EXAMPLES.get(f"{c.label}-{bad.arg}-{bad.what}", 0) + 1
    with pytest.raises(bad.raises) as info:
        c.call(args)
    assert_clear(info.value, names)


@pytest.mark.parametrize("what", list(ACCEPTED))
def test_deliberately_accepted(what: str):
    assert ACCEPTED[what]() in (None, True)  # a function of asserts, or a check that holds


def teardown_module() -> None:
    if EXAMPLES:
        print(f"\n{len(CASES)} cases over {len({id(c.target) for c in CASES})} public names; "
              f"{len(MUTATIONS)} mutations, {sum(EXAMPLES.values())} bad inputs tried")
