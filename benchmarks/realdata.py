"""Real data: pretrain a small BERT on WikiText-2, fine-tune it on SST-2, compare with from scratch.

Two questions from the issue, answered in one run on the CPU:

1. *Pretraining per CPU-minute*: held-out (``valid.txt``) masked-token accuracy and perplexity
   of a small BERT pretrained with MLM on WikiText-2, at checkpoints with the cumulative CPU
   minutes (``time.process_time()``: this process's CPU time, all threads) spent on pretraining.
2. *Does pretraining pay off*: SST-2 dev accuracy of (a) that model fine-tuned on SST-2 and
   (b) the same architecture from random weights, fine-tuned with the same steps, batch size and
   learning rate; with the CPU minutes of every stage.

The data are not part of the package: the script looks for ``../shared/realdata`` next to the
repository (``wikitext2/{train,valid}.txt`` and ``sst2/{train,dev}.tsv``, see that folder's
README) or ``--data DIR``, and prints ``skipped: …`` and exits normally when they are absent.

Pipeline (all from ``mlstep``):

- WikiText-2 lines are paragraphs; ``= Heading =`` lines and empty lines are dropped, ``<unk>``
  becomes the tokenizer's ``[UNK]`` and the ``@-@``/``@,@``/``@.@`` escapes become ``-``/``,``/``.``.
  A paragraph is a document, split into sentences at `` . ``; consecutive sentences form the
  ``[CLS] a [SEP] b [SEP]`` pairs (``make_pairs(objective="mlm")``), dynamically masked 15 %
  (80/10/10) by ``MaskingCollator``.
- One WordPiece vocabulary (frequency scoring) trained on the WikiText-2 training text is used
  by both SST-2 models, so they differ only in their initial weights.
- Pre-LN BERT (``pre_norm=True``), AdamW with a separate embedding learning rate, warmup then
  constant then linear decay (``mlstep.train``). The step count comes from ``--steps`` or from
  ``--pretrain-minutes`` and a short speed probe (CPU seconds per step, and per evaluation).
- Fine-tuning: ``BertForSequenceClassification`` (mean pooling), batches cut to their longest
  sentence (SST-2 phrases are short; padding to the dataset's longest would waste most of the
  work), warmup 10 % then linear decay. The dev accuracy reported is the one after the last step
  (no early stopping on dev).

Usage (from the repository root)::

    python benchmarks/realdata.py                          # 1 thread, ~15 CPU-min pretraining
    python benchmarks/realdata.py --pretrain-minutes 25 --json realdata.json
    python benchmarks/realdata.py --steps 3000 --finetune-steps 4000
    python benchmarks/realdata.py --quick                  # smoke run, well under a minute
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _timing when run as a script

from _timing import busy_warning, environment, markdown_table  # noqa: E402

from mlstep import BertConfig, BertForPreTraining, WordPieceTokenizer  # noqa: E402
from mlstep.data import load_sst2, load_wikitext2  # noqa: E402
from mlstep.finetune import BertForSequenceClassification, classification_step  # noqa: E402
from mlstep.pretrain import (  # noqa: E402
    MaskingCollator,
    PairDataset,
    evaluate_pretraining,
    fixed_batches,
    make_pairs,
    pretraining_step,
)
from mlstep.tasks import TensorDataset, encode_classification, evaluate_classifier  # noqa: E402
from mlstep.train import TrainConfig, train  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
WIKITEXT_ESCAPES = {" @-@ ": "-", " @,@ ": ",", " @.@ ": ".", "<unk>": "[UNK]"}


@dataclass(frozen=True)
class RealDataConfig:
    """Every number of one benchmark run (the defaults are the full run)."""

    vocab_size: int = 8000  # WordPiece vocabulary, trained on WikiText-2 train
    max_length: int = 64  # tokens per pretraining pair and per SST-2 sentence, specials included
    hidden_size: int = 128  # model width d
    num_layers: int = 2  # encoder layers
    num_heads: int = 4  # attention heads (32 features each at d = 128)
    intermediate_size: int = 512  # FFN width, 4·d
    dropout: float = 0.1  # dropout in embeddings, attention and FFN (pretraining and fine-tuning)
    batch_size: int = 64  # pretraining sentence pairs per step
    lr: float = 2e-3  # peak pretraining lr of the encoder (pre-LN tolerates a large one)
    embedding_lr: float = 5e-3  # peak lr of the embedding tables (rare tokens need bigger steps)
    warmup_ratio: float = 0.06  # pretraining: linear warmup over this fraction of the steps
    decay_ratio: float = 0.3  # pretraining: linear decay to 0 over this last fraction
    pretrain_minutes: float = 15.0  # CPU-minute budget of pretraining (used when steps is None)
    steps: int | None = None  # pretraining steps; None: derived from pretrain_minutes
    checkpoints: int = 8  # held-out evaluations during pretraining (evenly spaced)
    eval_pairs: int = 2000  # held-out valid.txt pairs per evaluation (masked once, fixed seed)
    finetune_steps: int = 2000  # SST-2 optimizer steps, the same for both models (~1 epoch at batch 32)
    finetune_batch_size: int = 32  # SST-2 sentences per step
    finetune_lr: float = 5e-4  # SST-2 peak lr, the same for both models
    pooling: str = "mean"  # sequence summary for the classifier: "mean" or "cls"
    wiki_lines: int | None = None  # use only the first N training paragraphs (None: all)
    sst2_train: int | None = None  # use only the first N SST-2 training sentences (None: all)
    probe_steps: int = 12  # steps timed to turn pretrain_minutes into a step count
    seed: int = 0  # seeds initialisation, data order, masks and dropout


QUICK = RealDataConfig(vocab_size=600, max_length=32, hidden_size=32, num_layers=1, num_heads=2,
                       intermediate_size=64, batch_size=16, steps=30, checkpoints=3, eval_pairs=64,
                       finetune_steps=30, finetune_batch_size=16, finetune_lr=1e-3, wiki_lines=300,
                       sst2_train=2000, probe_steps=4)


# --- data --------------------------------------------------------------------------------------

def find_data(path: str | Path | None = None) -> Path | None:
    """The real-data folder (``path`` or ``../shared/realdata``) if it has both datasets, else None."""
    root = Path(path) if path is not None else DEFAULT_DATA
    needed = [root / "wikitext2" / "train.txt", root / "wikitext2" / "valid.txt",
              root / "sst2" / "train.tsv", root / "sst2" / "dev.tsv"]
    return root if all(p.is_file() for p in needed) else None


def clean_wikitext(line: str) -> str:
    """Undo WikiText's escapes (``@-@`` → ``-``) and spell ``<unk>`` as the tokenizer's ``[UNK]``."""
    for old, new in WIKITEXT_ESCAPES.items():
        line = line.replace(old, new)
    return line.strip()


def wikitext_documents(lines: Sequence[str], limit: int | None = None) -> list[list[str]]:
    """Paragraphs → documents (lists of sentences); headings, empty lines and one-sentence paragraphs dropped."""
    documents = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("="):  # "= Heading =" and "= = Sub-heading = ="
            continue
        sentences = [s.strip() + " ." for s in clean_wikitext(line).rstrip(" .").split(" . ") if s.strip()]
        if len(sentences) >= 2:
            documents.append(sentences)
        if limit is not None and len(documents) >= limit:
            break
    return documents


def trimmed_loader(data: TensorDataset, batch_size: int, seed: int) -> DataLoader:
    """Shuffled batches of ``data``, each cut to its longest row (``(b, T_max)`` → ``(b, T_batch)``)."""

    def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
        T = int(batch["attention_mask"].sum(1).max())  # padding is on the right
        return {k: (v[:, :T] if v.dim() == 2 else v) for k, v in batch.items()}

    return DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


# --- stages ------------------------------------------------------------------------------------

def bert_config(cfg: RealDataConfig, vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                      num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                      max_position=cfg.max_length, dropout=cfg.dropout, pre_norm=True)


def embedding_groups(model: BertForPreTraining, lr: float) -> list[dict[str, Any]]:
    emb = model.bert.embeddings
    return [{"params": [emb.word_embeddings.weight, emb.position_embeddings.weight,
                        emb.token_type_embeddings.weight], "lr": lr}]


def probe_speed(model: BertForPreTraining, loader: DataLoader, valid_batches: list, cfg: RealDataConfig
                ) -> tuple[float, float]:
    """CPU seconds per pretraining step and per held-out evaluation, on a throwaway copy."""
    probe = copy.deepcopy(model)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    it = iter(loader)
    times = []
    for _ in range(cfg.probe_steps + 2):
        t = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss, _ = pretraining_step(probe, next(it))
        loss.backward()
        opt.step()
        times.append(time.process_time() - t)
    step_s = sorted(times[2:])[len(times[2:]) // 2]  # median after 2 warm-up steps
    t = time.process_time()
    evaluate_pretraining(probe, valid_batches)
    return step_s, time.process_time() - t


def pretrain(cfg: RealDataConfig, tokenizer: WordPieceTokenizer, train_docs: list, valid_docs: list,
             log=print) -> tuple[BertForPreTraining, dict[str, Any]]:
    """MLM pretraining on WikiText-2; returns the model and a record with the checkpoints."""
    t0 = time.process_time()
    train_set = PairDataset(make_pairs(train_docs, "mlm"), tokenizer, cfg.max_length)
    valid_set = PairDataset(make_pairs(valid_docs, "mlm"), tokenizer, cfg.max_length)
    collator = MaskingCollator(tokenizer, sentence_labels=False)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, collate_fn=collator,
                        generator=torch.Generator().manual_seed(cfg.seed))
    valid_batches = fixed_batches(valid_set, collator, batch_size=256, limit=cfg.eval_pairs, seed=cfg.seed)
    encode_min = (time.process_time() - t0) / 60
    torch.manual_seed(cfg.seed)
    model = BertForPreTraining(bert_config(cfg, tokenizer.vocab_size))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"pretraining data: {len(train_set):,} train pairs, {len(valid_set):,} valid pairs "
        f"(evaluating on {min(cfg.eval_pairs, len(valid_set)):,}); model {n_params:,} parameters")

    step_s = eval_s = None
    steps = cfg.steps
    if steps is None:
        step_s, eval_s = probe_speed(model, loader, valid_batches, cfg)
        budget = cfg.pretrain_minutes * 60 - (cfg.checkpoints + 1) * eval_s
        steps = max(cfg.checkpoints, int(budget / step_s))
        log(f"speed probe: {1e3 * step_s:.0f} ms/step, {eval_s:.1f} s/evaluation (CPU) → "
            f"{steps:,} steps for {cfg.pretrain_minutes:g} CPU-minutes")
    eval_every = max(1, steps // cfg.checkpoints)

    checkpoints: list[dict[str, Any]] = []
    t_start = time.process_time()
    before = evaluate_pretraining(model, valid_batches)
    checkpoints.append({"step": 0, "cpu_min": 0.0, **before})

    def eval_fn(m: BertForPreTraining) -> dict[str, float]:
        result = evaluate_pretraining(m, valid_batches)
        # the loop evaluates every eval_every steps and after the last one
        step = min(len(checkpoints) * eval_every, steps)
        checkpoints.append({"step": step, "cpu_min": (time.process_time() - t_start) / 60, **result})
        log(f"  step {checkpoints[-1]['step']:>6,}  {checkpoints[-1]['cpu_min']:6.2f} CPU-min  "
            f"masked acc {result['mlm_accuracy']:.3f}  ppl {result['perplexity']:.1f}")
        return result

    run = TrainConfig(max_steps=steps, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio, decay_ratio=cfg.decay_ratio,
                      eval_every=eval_every, seed=cfg.seed, progress=False, device="cpu", precision="fp32")
    history = train(model, loader, pretraining_step, run, param_groups=embedding_groups(model, cfg.embedding_lr),
                    eval_fn=eval_fn)
    if [c["step"] for c in checkpoints[1:]] != [e["step"] for e in history.evals]:
        raise RuntimeError("checkpoint steps out of sync with the training loop's evaluations")
    record = {"steps": steps, "eval_every": eval_every, "train_pairs": len(train_set),
              "valid_pairs_evaluated": min(cfg.eval_pairs, len(valid_set)), "parameters": n_params,
              "probe_ms_per_step": None if step_s is None else 1e3 * step_s,
              "probe_s_per_eval": eval_s, "encode_cpu_min": encode_min,
              "cpu_min": (time.process_time() - t_start) / 60, "checkpoints": checkpoints,
              "final_train_loss": history.train[-1]["loss"] if history.train else math.nan}
    return model.eval(), record


def finetune_sst2(model: BertForSequenceClassification, train_data: TensorDataset, dev: TensorDataset,
                  cfg: RealDataConfig) -> dict[str, Any]:
    """Fine-tune on SST-2 train with the shared settings; dev accuracy after the last step."""
    t = time.process_time()
    every = max(1, cfg.finetune_steps // 4)  # a few dev points for the JSON curve; the last is reported
    run = TrainConfig(max_steps=cfg.finetune_steps, lr=cfg.finetune_lr, warmup_ratio=0.1, eval_every=every,
                      seed=cfg.seed, progress=False, device="cpu", precision="fp32")
    history = train(model, trimmed_loader(train_data, cfg.finetune_batch_size, cfg.seed), classification_step,
                    run, eval_fn=lambda m: {"dev_accuracy": evaluate_classifier(m, dev)})
    return {"dev_accuracy": history.evals[-1]["dev_accuracy"], "cpu_min": (time.process_time() - t) / 60,
            "curve": [(e["step"], e["dev_accuracy"]) for e in history.evals]}


# --- report ------------------------------------------------------------------------------------

def run_benchmark(cfg: RealDataConfig, data: Path, log=print) -> dict[str, Any]:
    t_all = time.process_time()
    wall_all = time.perf_counter()
    t = time.process_time()
    wiki = load_wikitext2(path=data / "wikitext2")
    sst2 = load_sst2(path=data / "sst2")
    train_docs = wikitext_documents(wiki["train"]["text"], cfg.wiki_lines)
    valid_docs = wikitext_documents(wiki["validation"]["text"])
    tokenizer = WordPieceTokenizer.train([s for doc in train_docs for s in doc], vocab_size=cfg.vocab_size)
    prep_min = (time.process_time() - t) / 60
    log(f"tokenizer: {tokenizer.vocab_size:,} WordPiece tokens from {len(train_docs):,} paragraphs "
        f"({prep_min:.2f} CPU-min with loading)")

    model, pre = pretrain(cfg, tokenizer, train_docs, valid_docs, log)

    t = time.process_time()
    sst_train = sst2["train"] if cfg.sst2_train is None else sst2["train"].select(range(cfg.sst2_train))
    train_data = encode_classification(sst_train, tokenizer, max_length=cfg.max_length)
    dev = encode_classification(sst2["validation"], tokenizer, max_length=cfg.max_length)
    sst_encode_min = (time.process_time() - t) / 60
    majority = max(float(dev.tensors["labels"].float().mean()), 1 - float(dev.tensors["labels"].float().mean()))

    torch.manual_seed(cfg.seed)  # same classifier-head init for both
    pretrained = BertForSequenceClassification.from_pretrained(model, 2, dropout=cfg.dropout, pooling=cfg.pooling)
    fine = finetune_sst2(pretrained, train_data, dev, cfg)
    log(f"SST-2, pretrained + fine-tuned: dev accuracy {fine['dev_accuracy']:.3f} ({fine['cpu_min']:.2f} CPU-min)")
    torch.manual_seed(cfg.seed)
    scratch_model = BertForSequenceClassification(bert_config(cfg, tokenizer.vocab_size), 2, dropout=cfg.dropout,
                                                  pooling=cfg.pooling)
    scratch = finetune_sst2(scratch_model, train_data, dev, cfg)
    log(f"SST-2, from scratch:             dev accuracy {scratch['dev_accuracy']:.3f} ({scratch['cpu_min']:.2f} CPU-min)")

    pre_rows = [[f"{c['step']:,}", f"{c['cpu_min']:.2f}", f"{c['mlm_accuracy']:.3f}", f"{c['perplexity']:.1f}"]
                for c in pre["checkpoints"]]
    pre_table = markdown_table(["pretraining step", "CPU-min (cumulative)", "held-out masked-token acc",
                                "held-out perplexity"], pre_rows)
    n_epochs = cfg.finetune_steps * cfg.finetune_batch_size / len(train_data)
    ft_rows = [
        ["(a) pretrained on WikiText-2 + fine-tuned", f"{fine['dev_accuracy']:.3f}",
         f"{pre['cpu_min']:.2f} + {fine['cpu_min']:.2f} = {pre['cpu_min'] + fine['cpu_min']:.2f}"],
        ["(b) same architecture from scratch, fine-tuned", f"{scratch['dev_accuracy']:.3f}",
         f"{scratch['cpu_min']:.2f}"],
        ["majority class", f"{majority:.3f}", "—"],
    ]
    ft_table = markdown_table(["SST-2 model", "dev accuracy (872)", "CPU-min (pretrain + fine-tune)"], ft_rows)
    env = environment(torch.device("cpu"))
    result = {
        "config": dataclasses.asdict(cfg), "environment": env, "data": str(data),
        "vocab_size": tokenizer.vocab_size, "prep_cpu_min": prep_min, "sst2_encode_cpu_min": sst_encode_min,
        "pretraining": pre, "finetune_pretrained": fine, "finetune_scratch": scratch,
        "sst2_train_sentences": len(train_data), "finetune_epochs": n_epochs, "dev_majority": majority,
        "total_cpu_min": (time.process_time() - t_all) / 60, "total_wall_min": (time.perf_counter() - wall_all) / 60,
        "pretrain_table": pre_table, "finetune_table": ft_table,
    }
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help=f"real-data folder (default: {DEFAULT_DATA})")
    p.add_argument("--pretrain-minutes", type=float, default=None,
                   help=f"CPU-minute budget of pretraining (default {RealDataConfig.pretrain_minutes:g})")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (overrides --pretrain-minutes)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help=f"SST-2 steps for each model (default {RealDataConfig.finetune_steps})")
    p.add_argument("--layers", type=int, default=None, help=f"encoder layers (default {RealDataConfig.num_layers})")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--quick", action="store_true", help="tiny model and data subsets (smoke run, seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write every number (checkpoints, curves, environment) here")
    args = p.parse_args(argv)

    data = find_data(args.data)
    if data is None:
        where = args.data or DEFAULT_DATA
        print(f"skipped: real data not found at {where} (needs wikitext2/{{train,valid}}.txt and sst2/{{train,dev}}.tsv)")
        return {"skipped": f"not found: {where}"}
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else RealDataConfig()
    changes = {"seed": args.seed}
    if args.pretrain_minutes is not None:
        changes.update(pretrain_minutes=args.pretrain_minutes, steps=None)
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.finetune_steps is not None:
        changes["finetune_steps"] = args.finetune_steps
    if args.layers is not None:
        changes["num_layers"] = args.layers
    cfg = dataclasses.replace(cfg, **changes)

    env = environment(torch.device("cpu"))
    print(f"real data from {data}; CPU: {env['cpu']}, {args.threads} thread(s), torch {env['torch']}")
    if args.threads > 1 and (warning := busy_warning(env)) is not None:
        print(warning)  # with 1 thread, CPU time is not inflated by waiting for a core
    result = run_benchmark(cfg, data)
    print()
    print(f"Pretraining on WikiText-2 (L={cfg.num_layers}, d={cfg.hidden_size}, V={result['vocab_size']:,}, "
          f"T≤{cfg.max_length}, batch {cfg.batch_size}, {result['pretraining']['parameters']:,} parameters):")
    print(result["pretrain_table"])
    print()
    print(f"SST-2 ({result['sst2_train_sentences']:,} training sentences, {cfg.finetune_steps:,} steps × "
          f"{cfg.finetune_batch_size} = {result['finetune_epochs']:.2f} epochs, lr {cfg.finetune_lr:g}, "
          f"{cfg.pooling} pooling, both models alike):")
    print(result["finetune_table"])
    print()
    print(f"total: {result['total_cpu_min']:.2f} CPU-min, {result['total_wall_min']:.2f} wall-min "
          f"({args.threads} thread(s))")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
