"""The course's pretrained models, by name, and the one command that rebuilds any of them::

    python -m mlstep.tasks bert                       # data/pretrained: the tiny BERT (chapters 05-07, 09)
    python -m mlstep.tasks gpt                        # data/pretrained_gpt: the tiny GPT (chapter 08)
    python -m mlstep.tasks realtext --data DIR        # data/realtext/model: BERT on real English (chapter 10)

Every field of the model's recipe is an option (``--steps 500``, ``--lr 1e-3``, ``--max-documents
500``); ``--out``, ``--device`` and ``--threads`` say where and how. Chapters load a model with
:func:`load_course_model`, which rebuilds a missing one when it can (the offline corpus is in the
package; real text is not).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mlstep.data import realtext_dir
from mlstep.tasks.causal_lm import GPTRecipe, corpus_bpe, pretrain_gpt
from mlstep.tasks.masked_lm import PretrainRecipe, pretrain_on_corpus
from mlstep.tasks.realtext import REALTEXT_RECIPE, pretraining_corpus
from mlstep.tasks.store import load_model, save_model
from mlstep.tools.runtime import is_main_process, set_threads

__all__ = ["COURSE_MODELS", "course_dir", "load_course_model", "build_course_model", "main"]


def _build_bert(recipe: PretrainRecipe, device: str, data: str | None) -> tuple:
    model, tokenizer, history, _ = pretrain_on_corpus(recipe, device=device)
    return model, tokenizer, {"recipe": asdict(recipe), "final_eval": history.evals[-1] if history.evals else {},
                              "torch": torch.__version__}


def _build_gpt(recipe: GPTRecipe, device: str, data: str | None) -> tuple:
    tokenizer = corpus_bpe(recipe.vocab_size)
    model, history = pretrain_gpt(recipe, tokenizer, device=device)
    return model, tokenizer, {"recipe": asdict(recipe), "evals": history.evals,
                              "train_loss": history.series("train.loss"), "torch": torch.__version__}


def _build_realtext(recipe: PretrainRecipe, device: str, data: str | None) -> tuple:
    """The cost is stored with the model: ``cpu_minutes`` (this process, reading and tokenizing
    the text included) and ``tokens_seen`` (steps × pairs per step × processes × mean pair length)."""
    if data is None:
        raise ValueError("the real-text model needs --data DIR with full copies of wikitext2/, "
                         "ud_english_ewt/ and sst2/ (see data/README.md)")
    start = time.process_time()
    documents, held_out, words = pretraining_corpus(data)
    model, tokenizer, history, _ = pretrain_on_corpus(recipe, documents=documents, held_out=held_out, device=device)
    cpu_minutes = (time.process_time() - start) / 60
    lengths = [[len(tokenizer.tokenize(s)) for s in doc] for doc in documents]
    pair_lengths = [min(a + b + 3, recipe.max_length) for doc in lengths for a, b in zip(doc, doc[1:])]
    tokens_seen = (recipe.steps * recipe.batch_size * int(os.environ.get("WORLD_SIZE", "1"))
                   * sum(pair_lengths) / len(pair_lengths))
    return model, tokenizer, {"recipe": asdict(recipe), "words": words, "pairs": len(pair_lengths),
                              "tokens_seen": round(tokens_seen), "cpu_minutes": cpu_minutes, "device": device,
                              "threads": torch.get_num_threads(), "evals": history.evals, "torch": torch.__version__}


class CourseModel(NamedTuple):
    folder: str  # under data/ of a source checkout (committed)
    recipe: Any  # the recipe it is built with
    build: Callable[..., tuple]  # (recipe, device, data) -> (model, tokenizer, metadata)
    minutes: str  # what a rebuild costs, on one CPU thread


COURSE_MODELS = {
    "bert": CourseModel("pretrained", PretrainRecipe(), _build_bert, "about 3"),
    "gpt": CourseModel("pretrained_gpt", GPTRecipe(), _build_gpt, "about 7"),
    "realtext": CourseModel("realtext/model", REALTEXT_RECIPE, _build_realtext, "about 30"),
}


def course_dir(name: str) -> Path:
    """Where course model ``name`` lives: ``data/<folder>`` of a source checkout, else ``~/.cache/mlstep/<folder>``."""
    if name == "realtext":  # beside the real-English slices, wherever mlstep.data keeps those
        return realtext_dir() / "model"
    folder = _course_model(name).folder
    checkout = Path(__file__).resolve().parents[2] / "data"
    return checkout / folder if checkout.is_dir() else Path.home() / ".cache" / "mlstep" / folder


def _course_model(name: str) -> CourseModel:
    if name not in COURSE_MODELS:
        raise ValueError(f"unknown course model {name!r}; choose one of {sorted(COURSE_MODELS)}")
    return COURSE_MODELS[name]


def build_course_model(name: str, directory: str | os.PathLike | None = None, recipe: Any = None,
                       device: str = "cpu", data: str | os.PathLike | None = None) -> dict:
    """Pretrain course model ``name`` with ``recipe`` (default: its own) and save model, tokenizer
    and the run's numbers to ``directory`` (default :func:`course_dir`; rank 0 only). Returns the metadata."""
    entry = _course_model(name)
    model, tokenizer, metadata = entry.build(recipe or entry.recipe, device, data)
    if is_main_process():
        save_model(directory or course_dir(name), model.cpu(), tokenizer, metadata)
    return metadata


def load_course_model(name: str = "bert", directory: str | os.PathLike | None = None, rebuild: bool = True):
    """``(model in eval mode, tokenizer, metadata)`` of course model ``name`` (``"bert"``, ``"gpt"``,
    ``"realtext"``) from ``directory`` (default :func:`course_dir`). A missing model is rebuilt with
    its recipe when ``rebuild`` is True and it can be (not the real-text one: it needs the real text)."""
    entry = _course_model(name)
    directory = Path(directory) if directory is not None else course_dir(name)
    if not (directory / "model.pt").exists():
        if not rebuild or name == "realtext":
            raise FileNotFoundError(f"no course model {name!r} in {directory}; run `python -m mlstep.tasks {name}`")
        print(f"{directory} is missing: pretraining it now ({entry.minutes} minutes on one CPU thread)")
        build_course_model(name, directory)
    return load_model(directory)


def _recipe_options(parser: argparse.ArgumentParser, recipe: Any) -> None:
    """One option per recipe field: ``--steps 500``, ``--max-documents 500`` (None-valued fields take ints)."""
    for f in fields(recipe):
        default = getattr(recipe, f.name)
        kind = int if default is None else type(default)
        if kind is bool:
            kind = _yes_no
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=default)


def _yes_no(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1", "yes")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m mlstep.tasks NAME [--out DIR] [--device D] [--threads N] [--data DIR] [--FIELD VALUE ...]``."""
    parser = argparse.ArgumentParser(prog="python -m mlstep.tasks", description="Rebuild a course model.")
    sub = parser.add_subparsers(dest="name", required=True)
    for name, entry in COURSE_MODELS.items():
        p = sub.add_parser(name, help=f"{entry.folder} ({entry.minutes} CPU minutes)")
        p.add_argument("--out", type=Path, default=None, help=f"output folder (default: data/{entry.folder})")
        p.add_argument("--device", default="cpu", help='"cpu", "cuda" or "auto"')
        p.add_argument("--threads", type=int, default=None, help="CPU threads (default: MLSTEP_THREADS or 1)")
        p.add_argument("--data", default=None, help="real-text model: folder with wikitext2/, ud_english_ewt/, sst2/")
        _recipe_options(p, entry.recipe)
    args = vars(parser.parse_args(argv))
    name, out, device, data = args.pop("name"), args.pop("out"), args.pop("device"), args.pop("data")
    set_threads(args.pop("threads"))
    recipe = replace(COURSE_MODELS[name].recipe, **args)
    metadata = build_course_model(name, out, recipe, device=device, data=data)
    if is_main_process():
        last = metadata.get("final_eval") or (metadata.get("evals") or [{}])[-1]
        print(f"saved to {out or course_dir(name)}: {json.dumps(last)}")
