"""One model store for every mlstep model: ``save_model`` / ``load_model``.

A model folder holds ``model.pt`` (the config, its type, the weights and metadata, written
atomically) and, optionally, ``tokenizer.json``. The config's type says which model to rebuild
(:class:`~mlstep.bert.BertConfig` → :class:`~mlstep.bert.BertForPreTraining`,
:class:`~mlstep.gpt.GPTConfig` → :class:`~mlstep.gpt.GPT`), and the tokenizer file's own format
says which tokenizer. Loading uses ``torch.load(weights_only=True)``: a model file cannot run code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.gpt import GPT, GPTConfig
from mlstep.tokenizers.base import Tokenizer
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer
from mlstep.tokenizers.wordpiece import WordPieceTokenizer
from mlstep.tools.checkpoint import save_tensors

__all__ = ["save_model", "load_model", "load_tokenizer", "FORMAT"]

FORMAT = "mlstep-model-v1"
MODELS = {"BertConfig": (BertConfig, BertForPreTraining), "GPTConfig": (GPTConfig, GPT)}
EARLIER_FORMATS = {"mlstep-pretrained-v2": "BertConfig", "mlstep-gpt-v1": "GPTConfig"}  # still read
TOKENIZERS = {cls.FORMAT: cls for cls in (WordPieceTokenizer, ByteLevelBPETokenizer)}


def save_model(directory: str | os.PathLike, model: nn.Module, tokenizer: Tokenizer | None = None,
               metadata: dict | None = None) -> Path:
    """Write ``model.pt`` (config, weights, metadata) and, if given, ``tokenizer.json`` into ``directory``."""
    kind = type(getattr(model, "config", None)).__name__
    if kind not in MODELS or not isinstance(model, MODELS[kind][1]):
        raise TypeError(f"save_model stores a BertForPreTraining or a GPT, got {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_tensors({"format": FORMAT, "config_type": kind, "config": asdict(model.config), "model": state,
                  "metadata": json.dumps(metadata or {})}, directory / "model.pt")
    if tokenizer is not None:
        tokenizer.save(directory / "tokenizer.json")
    return directory


def load_model(directory: str | os.PathLike, map_location: str | torch.device = "cpu"
               ) -> tuple[nn.Module, Tokenizer | None, dict]:
    """``(model in eval mode, tokenizer or None, metadata)`` as :func:`save_model` wrote them."""
    path = Path(directory) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path}: save one with save_model, or rebuild a course "
                                "model with `python -m mlstep.tasks {bert,gpt,realtext}`")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    kind = ckpt.get("config_type") if fmt == FORMAT else EARLIER_FORMATS.get(fmt)
    if kind not in MODELS:
        raise ValueError(f"{path} is not an mlstep model file (format {fmt!r}, expected {FORMAT!r}); "
                         "save it with save_model")
    config_cls, model_cls = MODELS[kind]
    model = model_cls(config_cls(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    tok_path = Path(directory) / "tokenizer.json"
    tokenizer = load_tokenizer(tok_path) if tok_path.exists() else None
    return model.eval(), tokenizer, json.loads(ckpt.get("metadata", "{}"))


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved at ``path``, WordPiece or byte-level BPE, as its file's format says."""
    try:
        fmt = json.loads(Path(path).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{str(path)!r} is not a tokenizer JSON file: {e}") from None
    if fmt not in TOKENIZERS:
        raise ValueError(f"{str(path)!r} has tokenizer format {fmt!r}; known: {sorted(TOKENIZERS)}")
    return TOKENIZERS[fmt].load(path)
