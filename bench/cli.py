"""Benchmarks on real tickets: `python -m bench` (`make bench`, ~1 h 30 min on 2 CPU cores), `--full` (~2 h 35
min, plus 2-5 h for the mtl section), `--quick` (`make bench-quick`, ~10 min). Run from the repository root.

Sections, run in this order (`--only NAME[,NAME]` runs some and merges them into an existing results.json):

  reference  majority class and TF-IDF + logistic regression, one model per task
  router     the recommended config over seeds (`train_router`; `--reuse` keeps finished ones)
  single     single-task fine-tunes, same backbone, budget and first seed(s) (`train_baselines`)
  shadow     paired router-vs-single-task statistics per seed (`run_shadow`)
  ablations  one-key variations of the recommended config, first seed, ablation budget (--full, --quick, --only)
  speed      training and inference throughput and peak memory on this machine
  gpu        mixed-precision throughput, only where CUDA is available
  mtl        issue 12's balancing methods vs uncertainty weighting and single-task encoders, on Harbor unless
             --mtl-config says otherwise (--full, --quick, --only; `bench/mtl_protocol.py`)

Results go to `bench/results.json`; the tables go into `BENCHMARKS.md` between `<!-- bench:begin -->` and
`<!-- bench:end -->` (`bench/report.py`). What each profile trains, and its time: `bench/settings.py`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ticket_router.errors import InputError
from ticket_router.serialization import json_safe

from bench.machine import machine_line
from bench.report import duration, render_markdown, write_benchmarks_md
from bench.results import load_results, now, save_results
from bench.sections import SECTIONS, section_function
from bench.settings import (
    ABLATION_EPOCHS,
    DEFAULT_MISSING,
    FIRST_SEED,
    PROFILES,
    Bench,
    Profile,
    make_bench,
    profile_name,
    repo_path,
    settings,
)

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="One seed at 0.1 epoch, every section (~10 min on 2 cores).")
    p.add_argument("--full", action="store_true",
                   help="The full protocol: 3 router seeds, the ablations and the mtl section (~2 h 35 min on 2 cores, "
                        "plus 2-5 h for mtl; the default run, 1 seed, no ablations, no mtl, takes ~1 h 30 min).")
    p.add_argument("--only", help=f"Comma-separated sections to run and merge into --results: {','.join(SECTIONS)}.")
    p.add_argument("--data-dir",
                   help="Folder with train.csv and validation.csv. Default: ../shared/data/support-tickets.")
    p.add_argument("--config", help="Recommended TrainConfig YAML. Default: configs/support-tickets.yaml.")
    p.add_argument("--out", help="Model and report folder (git-ignored). Default: bench/out.")
    p.add_argument("--results", help="Results JSON. Default: bench/results.json.")
    p.add_argument("--benchmarks-md", help="Markdown file for the tables. Default: BENCHMARKS.md.")
    p.add_argument("--backbone", help="Backbone for every model (default: the config's).")
    p.add_argument("--seeds", type=int,
                   help=f"Number of seeds from {FIRST_SEED}. Default: 1 (3 with --full).")
    p.add_argument("--single-seeds", type=int,
                   help="Seeds (the first ones) for the single-task models and shadow statistics. "
                        "Default: 1.")
    p.add_argument("--epochs", type=float,
                   help=f"Epochs per main training. Default: the config's budget ({PROFILES['quick'].epochs:g} with --quick).")
    p.add_argument("--ablation-epochs", type=float,
                   help=f"Epochs per ablation training. Default: {ABLATION_EPOCHS:g}, at most the main budget.")
    p.add_argument("--max-steps", type=int, help="Optimizer steps for every training (overrides epochs; smoke tests).")
    p.add_argument("--speed-steps", type=int,
                   help=f"Steps per throughput run. Default: {PROFILES['full'].speed_steps} ({PROFILES['quick'].speed_steps} quick).")
    p.add_argument("--speed-texts", type=int, help="Validation tickets for inference timing. Default: all (256 quick).")
    p.add_argument("--reuse", action="store_true",
                   help="Keep the models in --out that were trained with the identical config (a stopped run, or "
                        "lexical settings changed): refit their lexical heads and score them again, no fine-tune. "
                        "Their train time is the original run's; the tables mark them.")
    p.add_argument("--mtl-config", help="mtl section: the config whose methods are compared. Default: "
                   "configs/harbor.yaml with data/harbor/{train,validation,test}.csv.")
    p.add_argument("--mtl-train", help="mtl section: training file instead of the config's.")
    p.add_argument("--mtl-validation", help="mtl section: validation file instead of the config's.")
    p.add_argument("--mtl-test", help="mtl section: labeled file no training sees (needed with --mtl-config; the "
                   "support tickets have none: hold part of train.csv out and give the rest as --mtl-train).")
    p.add_argument("--mtl-methods", help="mtl section: comma-separated bench.mtl_protocol.METHODS, the first the "
                   "reference. Default: all (uncertainty,gradnorm with --quick).")
    p.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples in the shadow CI. Default: 1000.")
    p.add_argument("--missing", default=DEFAULT_MISSING,
                   help=f"TASK=RATE of labels blanked for the missing-labels ablation. Default: {DEFAULT_MISSING}.")
    return p.parse_args(argv)


def selected_sections(only: str | None, profile: Profile) -> list[str]:
    """--only's sections in run order, else the profile's (the default run leaves the ablations out)."""
    if not only:
        return [name for name in SECTIONS if name not in profile.sections_off]
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise InputError(f"--only {only!r}: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return [name for name in SECTIONS if name in names]  # dependency order, whatever order was typed


def run_section(name: str, bench: Bench, results: dict[str, Any], results_path: Path) -> bool:
    """Run one section, store it (or its error) and save results.json at once, so a crash loses nothing done."""
    logger.info("=== section %s ===", name)
    started, when = time.perf_counter(), now()
    try:
        data = section_function(name)(bench, results)
    except Exception as error:  # recorded, logged with traceback and reflected in the exit status; not swallowed
        logger.exception("section %s failed after %.1f s", name, time.perf_counter() - started)
        results["errors"][name] = {"error": f"{type(error).__name__}: {error}", "command": bench.command,
                                   "when": when, "traceback": traceback.format_exc()}
        save_results(results_path, results)
        return False
    wall = round(time.perf_counter() - started, 2)
    data["wall_s"] = wall
    data["run"] = {"command": bench.command, "started": when, "machine": machine_line(bench.machine)}
    results["sections"][name] = json_safe(data)
    results["errors"].pop(name, None)
    results["section_wall_s"] = {n: s["wall_s"] for n, s in results["sections"].items()}
    save_results(results_path, results)
    logger.info("section %s done in %s", name, duration(wall))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "bench", *argv])
    args = parse_args(argv)
    import transformers  # here: `--help` needs no torch

    transformers.logging.set_verbosity_warning()
    results_path = repo_path(args.results, "bench/results.json")
    md_path = repo_path(args.benchmarks_md, "BENCHMARKS.md")
    try:
        names = selected_sections(args.only, PROFILES[profile_name(args)])
        bench = make_bench(args, command)
        results = load_results(results_path, merge=bool(args.only))
    except InputError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    started_wall, started = time.perf_counter(), now()
    results.update(command=command, argv=argv, machine=bench.machine, settings=settings(bench), started=started)
    logger.info("bench: sections %s; %s", ", ".join(names), machine_line(bench.machine))
    failed = [name for name in names if not run_section(name, bench, results, results_path)]
    results.update(finished=now(), wall_s=round(time.perf_counter() - started_wall, 2))
    save_results(results_path, results)
    write_benchmarks_md(md_path, render_markdown(results))
    status = f"FAILED: {', '.join(failed)}" if failed else "ok"
    print(f"bench: {len(names)} section(s) in {duration(results['wall_s'])} ({status}); "
          f"results -> {results_path}, tables -> {md_path}")
    return 1 if failed else 0

