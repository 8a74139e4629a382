"""Real data: does pretraining pay off, and at which label budget? Label-budget curves, ≥ 3 seeds.

The real-text model of chapter 10 (``data/realtext/model``, made by ``python -m mlstep.tasks realtext``)
against the same architecture from random weights, fine-tuned on growing labeled budgets of two
tasks:

- **UD English EWT parts of speech** (17 UPOS tags): word accuracy on the test split, also on
  the test words never seen in the labeled sentences; validation: the dev split.
- **SST-2** (sentiment of film-review phrases): accuracy on the GLUE dev split; validation:
  2,000 training phrases kept out of every budget.

Protocol, for each task, arm (pretrained / from scratch) and budget:

1. *tune* on the validation split with seed 0: every learning rate × steps of the grid;
2. *run* seeds 0, 1, 2 with the chosen setting; a seed draws the labeled sample
   (:func:`mlstep.tasks.realtext.sample_order`), the head (and the scratch encoder), the data order;
3. report the test mean ± sd (sample sd over the seeds).

The same protocol trains a *linear probe* (frozen encoder, only the head learns) at one budget
per task: what the features hold before fine-tuning moves them.

The data are not part of the repository: the script reads ``--data DIR``, else
``$MLSTEP_REALDATA``, else ``../shared/realdata`` beside the repository
(``ud_english_ewt/en_ewt-ud-{train,dev,test}.conllu``, ``sst2/{train,dev}.tsv``) and prints
``skipped: …`` without them. Usage (from the repository root, 1 thread)::

    python benchmarks/realdata.py --json data/realtext/label_budgets.json   # the committed results
    python benchmarks/realdata.py --tasks ud_pos --seeds 5
    python benchmarks/realdata.py --quick                                   # smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _timing when run as a script

from _timing import environment, markdown_table  # noqa: E402

from mlstep.data import UPOS_TAGS, load_conllu, load_sst2  # noqa: E402
from mlstep.tasks.course import load_course_model  # noqa: E402
from mlstep.tasks.labeled import (  # noqa: E402
    encode_classification,
    encode_tagging,
    evaluate_classifier,
    predict_tags,
    word_accuracy,
)
from mlstep.tasks.realtext import FinetuneSetting, fine_tune, sample_order  # noqa: E402

# $MLSTEP_REALDATA, else ../shared/realdata beside the repository
DEFAULT_DATA = Path(os.environ.get("MLSTEP_REALDATA") or Path(__file__).resolve().parents[1].parent / "shared" / "realdata")
SST2_VALIDATION = 2000  # training phrases held out of every budget, for tuning


# --- the two tasks ---------------------------------------------------------------------------------

class Task:
    """A labeled task: its splits, how a budget is drawn and encoded, and how a model is scored."""

    def __init__(self, name: str, kind: str, train: Any, validation: Any, test: Any, tokenizer,
                 budgets: Sequence[int], steps: dict[int, int], probe_budget: int):
        self.name, self.kind, self.tokenizer = name, kind, tokenizer
        self.train, self.budgets, self.steps, self.probe_budget = train, list(budgets), steps, probe_budget
        self.num_labels = len(UPOS_TAGS) if kind == "tagging" else 2
        self.validation, self.test = self.encode(validation), self.encode(test)

    def encode(self, rows: Any):
        if self.kind == "tagging":
            return encode_tagging(rows, self.tokenizer, UPOS_TAGS, max_length=128)
        return encode_classification(rows, self.tokenizer, max_length=64)

    def sample(self, budget: int, seed: int) -> Any:
        return self.train.select(sample_order(len(self.train), seed)[:budget])

    def score(self, model, data, labeled: Any) -> dict[str, float]:
        seen = {w.lower() for words in labeled["tokens" if self.kind == "tagging" else "text"]
                for w in (words if self.kind == "tagging" else words.split())}
        if self.kind == "tagging":
            predicted = predict_tags(model, data, UPOS_TAGS)
            return word_accuracy(predicted, data.extra["tags"], data.extra["words"], seen)
        words = [w.lower() for ids in data.tensors["input_ids"] for w in self.tokenizer.decode(ids).split()]
        return {"accuracy": evaluate_classifier(model, data),
                "unseen_share": sum(w not in seen for w in words) / len(words)}


def ud_task(data: Path, tokenizer, quick: bool) -> Task:
    ud = load_conllu(data / "ud_english_ewt")
    if quick:
        return Task("ud_pos", "tagging", ud["train"], ud["validation"].select(range(100)),
                    ud["test"].select(range(200)), tokenizer, [20, 40], {20: 8, 40: 8}, 40)
    return Task("ud_pos", "tagging", ud["train"], ud["validation"], ud["test"], tokenizer,
                [50, 200, 1000], {50: 150, 200: 300, 1000: 600}, 200)


def sst2_task(data: Path, tokenizer, quick: bool) -> Task:
    sst2 = load_sst2(data / "sst2")
    order = sample_order(len(sst2["train"]), seed=12345)  # a fixed validation split, unlike budgets
    validation = sst2["train"].select(order[:SST2_VALIDATION])
    train = sst2["train"].select(sorted(order[SST2_VALIDATION:]))
    if quick:
        return Task("sst2", "classification", train, validation.select(range(100)),
                    sst2["validation"].select(range(200)), tokenizer, [20, 40], {20: 8, 40: 8}, 40)
    return Task("sst2", "classification", train, validation, sst2["validation"], tokenizer,
                [1000, 5000], {1000: 400, 5000: 800}, 1000)


# --- one cell: tune, then seeds ---------------------------------------------------------------------

def run_one(task: Task, pretrained, config, budget: int, setting: FinetuneSetting, seed: int,
            probe: bool, eval_on: str) -> tuple[dict[str, float], float]:
    labeled = task.sample(budget, seed)
    start = time.process_time()
    model = fine_tune(pretrained, config, task.encode(labeled), task.num_labels, setting, seed, task.kind,
                      probe=probe)
    cpu = (time.process_time() - start) / 60
    return task.score(model, task.validation if eval_on == "validation" else task.test, labeled), cpu


def run_cell(task: Task, pretrained, config, budget: int, grid: list[FinetuneSetting], seeds: int,
             probe: bool, log) -> dict[str, Any]:
    arm = ("pretrained" if pretrained is not None else "scratch") + ("_probe" if probe else "")
    tuning = []
    for setting in grid:
        score, cpu = run_one(task, pretrained, config, budget, setting, 0, probe, "validation")
        tuning.append({**asdict(setting), "validation": score["accuracy"], "cpu_min": cpu})
        log(f"  {task.name} {arm:>16} n={budget:<6} tune lr={setting.lr:g} steps={setting.steps}: "
            f"validation {score['accuracy']:.4f}")
    best = max(tuning, key=lambda t: t["validation"])
    chosen = FinetuneSetting(best["lr"], best["steps"], best["batch_size"])
    runs = []
    for seed in range(seeds):
        score, cpu = run_one(task, pretrained, config, budget, chosen, seed, probe, "test")
        runs.append({"seed": seed, **score, "cpu_min": cpu})
        log(f"  {task.name} {arm:>16} n={budget:<6} seed {seed}: test {score['accuracy']:.4f}")
    summary = {k: mean_sd([r[k] for r in runs]) for k in runs[0] if k not in ("seed", "cpu_min")}
    return {"setting": asdict(chosen), "tuning": tuning, "runs": runs, **summary}


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation, NaN (no such word in a sample) left out."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"mean": math.nan, "sd": math.nan}
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def lr_grid(task: Task, budget: int, probe: bool, quick: bool) -> list[FinetuneSetting]:
    """The settings tried on validation: three learning rates at the budget's number of steps."""
    lrs = [1e-3] if quick else [3e-3, 1e-2, 3e-2] if probe else [3e-4, 1e-3, 3e-3]
    return [FinetuneSetting(lr, task.steps[budget]) for lr in lrs]


ARMS = ("pretrained", "scratch", "pretrained_probe", "scratch_probe")


def run_task(task: Task, pretrained, arms: Sequence[str], seeds: int, quick: bool, log,
             save=lambda result: None, budgets: Sequence[int] | None = None) -> dict[str, Any]:
    """Every cell of ``arms`` (only the ``budgets`` given, if any); ``save(result)`` after each, so
    an interrupted run keeps its cells."""
    result: dict[str, Any] = {"kind": task.kind, "budgets": task.budgets, "train_size": len(task.train),
                              "test_size": len(task.test), "arms": {}}
    for arm in arms:
        model, probe = (pretrained if arm.startswith("pretrained") else None), arm.endswith("probe")
        for n in [task.probe_budget] if probe else task.budgets:
            if budgets and n not in budgets:
                continue
            cell = run_cell(task, model, pretrained.config, n, lr_grid(task, n, probe, quick), seeds, probe, log)
            result["arms"].setdefault(arm, {})[str(n)] = cell
            save(result)
    return result


# --- report ---------------------------------------------------------------------------------------

def table(name: str, result: dict[str, Any]) -> str:
    """One markdown table per task: mean ± sd for each budget, both arms, the gain."""
    rows = []
    for n in result["budgets"]:
        p, s = result["arms"]["pretrained"][str(n)], result["arms"]["scratch"][str(n)]
        row = [f"{n:,}", f"{100 * s['accuracy']['mean']:.1f} ± {100 * s['accuracy']['sd']:.1f}",
               f"{100 * p['accuracy']['mean']:.1f} ± {100 * p['accuracy']['sd']:.1f}",
               f"{100 * (p['accuracy']['mean'] - s['accuracy']['mean']):+.1f}"]
        if result["kind"] == "tagging":
            row += [f"{100 * p['unseen_share']['mean']:.0f} %",
                    f"{100 * s['unseen_accuracy']['mean']:.1f} → {100 * p['unseen_accuracy']['mean']:.1f}"]
        row += [f"{s['setting']['lr']:g} / {s['setting']['steps']}", f"{p['setting']['lr']:g} / {p['setting']['steps']}"]
        rows.append(row)
    headers = ["labels", "from scratch", "pretrained", "gain"]
    if result["kind"] == "tagging":
        headers += ["test words unseen in labels", "accuracy on them (scratch → pretrained)"]
    return markdown_table(headers + ["lr / steps, scratch", "lr / steps, pretrained"], rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help=f"real-data folder (default: {DEFAULT_DATA})")
    p.add_argument("--model", default=None, help="pretrained model folder (default: data/realtext/model)")
    p.add_argument("--tasks", default="ud_pos,sst2", help="comma-separated: ud_pos, sst2")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated: {', '.join(ARMS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--quick", action="store_true", help="tiny budgets and steps (smoke run)")
    p.add_argument("--budgets", default=None,
                   help="comma-separated label budgets to run (default: every budget of each task)")
    p.add_argument("--json", default=None, help="write every number here (merged into an existing file)")
    args = p.parse_args(argv)
    data = Path(args.data) if args.data else DEFAULT_DATA
    needed = [data / "ud_english_ewt", data / "sst2" / "train.tsv", data / "sst2" / "dev.tsv"]
    if not all(path.exists() for path in needed):
        print(f"skipped: real data not found at {data} (needs ud_english_ewt/ and sst2/{{train,dev}}.tsv)")
        return {"skipped": f"not found: {data}"}
    torch.set_num_threads(args.threads)
    pretrained, tokenizer, metadata = load_course_model("realtext", args.model)
    result: dict[str, Any] = {"environment": environment(torch.device("cpu")), "seeds": args.seeds,
                              "model": {k: metadata[k] for k in ("recipe", "cpu_minutes", "tokens_seen")
                                        if k in metadata}, "tasks": {}}
    arms = args.arms.split(",")
    if set(arms) - set(ARMS):
        p.error(f"unknown arms {sorted(set(arms) - set(ARMS))}; choose from {ARMS}")
    merged = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).exists() else {}
    merged.update({k: v for k, v in result.items() if k != "tasks"})

    def save(name: str, task_result: dict[str, Any], cpu_min: float) -> dict[str, Any]:
        """Merge into the JSON file: runs of some arms and budgets add to (or replace) those cells."""
        earlier = merged.setdefault("tasks", {}).setdefault(name, {"arms": {}, "cpu_min": {}})
        earlier.update({k: v for k, v in task_result.items() if k not in ("arms", "cpu_min")})
        for arm, cells in task_result["arms"].items():  # budget by budget: earlier budgets stay
            earlier["arms"].setdefault(arm, {}).update(cells)
        earlier["cpu_min"][args.arms + (f" (budgets {args.budgets})" if args.budgets else "")] = cpu_min
        if all(str(n) in earlier["arms"].get(arm, {}) for arm in ("pretrained", "scratch") for n in earlier["budgets"]):
            earlier["table"] = table(name, earlier)
        if args.json:
            Path(args.json).write_text(json.dumps(merged, indent=1, default=float) + "\n")
        return earlier

    for name in args.tasks.split(","):
        start = time.process_time()
        task = {"ud_pos": ud_task, "sst2": sst2_task}[name](data, tokenizer, args.quick)
        only = [int(n) for n in args.budgets.split(",")] if args.budgets else None
        run = run_task(task, pretrained, arms, args.seeds, args.quick, print,
                       save=lambda r, name=name, start=start: save(name, r, (time.process_time() - start) / 60),
                       budgets=only)
        result["tasks"][name] = save(name, run, (time.process_time() - start) / 60)
        if "table" in result["tasks"][name]:
            print(f"\n{name}:\n{result['tasks'][name]['table']}\n")
    if args.json:
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
