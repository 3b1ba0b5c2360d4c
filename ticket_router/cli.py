"""`ticket-router` command line: train, baselines, evaluate, predict, shadow (and export, serve, calibrate, pretrain).

Bad input ends with one line on stderr (`ticket-router: error: ...`) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import typing
from collections.abc import Sequence
from dataclasses import MISSING, fields
from enum import Enum
from pathlib import Path
from typing import Any

from .atomic import atomic_file
from .calibrate import add_calibrate_command
from .config import TrainConfig, build_config
from .errors import InputError
from .export import add_export_command  # serve
from .pretrain import add_pretrain_command
from .serve import add_serve_command  # serve

logger = logging.getLogger("ticket_router")

_LEXICAL_WEIGHT_HELP = "Share of the lexical heads in the fused probabilities (0: encoder heads alone). Default: as trained."
_ENCODING_HELP = "Text encoding of the input file (default utf-8, e.g. latin-1, cp1252)."
_REPEATABLE = {"tasks": ("--task", "NAME=COLUMN"), "task_weights": ("--task-weight", "NAME=WEIGHT"),
               "task_targets": ("--task-target", "NAME=PRECISION")}


def _flag_kind(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """argparse `type` and extra keywords from a field's real type (`int | None` -> int, an Enum -> its values)."""
    options = [t for t in typing.get_args(annotation) if t is not type(None)] or [annotation]
    kind = options[0] if len(options) == 1 else str
    if isinstance(kind, type) and issubclass(kind, Enum):  # checked by check_knobs, which names the key
        return str, {"metavar": "{" + ",".join(m.value for m in kind) + "}"}
    if kind in (int, float, bool):
        return kind, {}
    return str, {}  # str, and lists given comma-separated (normalised by config.normalise)


def _train_fields() -> list:
    """TrainConfig's own keys first (data, model, budget), then the multi-task knobs it inherits."""
    from .settings import KNOBS

    return sorted(fields(TrainConfig), key=lambda f: f.name in KNOBS)


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults are None so that only given flags override the YAML config."""
    parser.add_argument("--config", help="YAML file with the same keys as these flags (flags win).")
    types = typing.get_type_hints(TrainConfig)
    for f in _train_fields():
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        if default not in (None, {}, []):
            shown = ",".join(default) if isinstance(default, list) else getattr(default, "value", default)
            help_text += f" Default: {shown}."
        flag = f"--{f.name.replace('_', '-')}"
        kind, extra = _flag_kind(types[f.name])
        if f.name in _REPEATABLE:
            flag, metavar = _REPEATABLE[f.name]
            parser.add_argument(flag, dest=f.name, action="append", metavar=metavar, help=help_text)
        elif kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, help=help_text, **extra)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    return build_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .console import training_table
    from .training import train_router

    config = _train_config(args)
    summary = train_router(config)
    if summary:  # under accelerate launch only the first process saves, scores and reports
        print(training_table(summary, config.output))  # the JSON is in OUTPUT/metrics.json
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from .baselines import train_baselines

    summaries = train_baselines(_train_config(args))
    print(json.dumps({task: s.get("tasks", {}) for task, s in summaries.items()}, indent=2, sort_keys=True))
    return 0


def _router_loader(lexical_weight: float | None):
    """`Router.from_pretrained`, then the `--lexical-weight` override where one was given."""
    from .router import Router

    def load(path: str | Path, device: str | None = None) -> Router:
        router = Router.from_pretrained(path, device=device)
        if lexical_weight is not None:  # e.g. 0: the encoder heads alone
            router.lexical_weight = lexical_weight
        return router

    return load


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import read_table

    table = read_table(args.data, encoding=args.encoding)  # before the model: a bad file fails fast
    router = _router_loader(args.lexical_weight)(args.model)
    metrics = router.evaluate(table, args.data, strict=args.strict, batch_size=args.batch_size, plots=args.plots)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    if args.output:
        with atomic_file(args.output) as handle:
            handle.write(text + "\n")
    print(text)
    return 0


def _read_lines(path: str, encoding: str | None) -> list[str]:
    """One ticket per non-blank line of a .txt file or stdin; blank lines are skipped and counted."""
    from .data import decode_text, read_lines

    if path == "-":
        text = decode_text(sys.stdin.buffer.read(), "stdin", encoding) if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        lines = text.splitlines()
    else:
        lines = read_lines(path, encoding)
    tickets = [line for line in lines if line.strip()]
    if len(tickets) < len(lines):
        logger.warning("%s: skipped %d blank line(s) of %d; one ticket per non-blank line",
                       "stdin" if path == "-" else path, len(lines) - len(tickets), len(lines))
    return tickets


def _read_tickets(args: argparse.Namespace, text_columns: list[str]) -> tuple[list[str], list | None]:
    """Ticket texts and ids: stdin/.txt give one ticket per line; tables use the model's text columns."""
    if args.input == "-" or args.input.endswith(".txt"):
        return _read_lines(args.input, args.encoding), None
    from .data import join_text_columns, read_table

    table = read_table(args.input, encoding=args.encoding)
    texts = join_text_columns(table, text_columns, args.input, warn_blank=False)  # `route` warns once
    ids = table["id"] if "id" in table.column_names else None
    return texts, ids


def _id_key(records: list[dict]) -> str:
    """The input `id` is kept as "id", unless a task is itself called "id"."""
    if records and "id" in records[0]:
        logger.warning("a task is named 'id': the input id column is written as 'input_id'")
        return "input_id"
    return "id"


_OUTPUT_SUFFIXES = (".csv", ".jsonl", ".json")


def _check_output(path: str) -> None:
    if path != "-" and not path.endswith(_OUTPUT_SUFFIXES):
        raise InputError(f"--output {path}: use .csv, .jsonl, .json or - (stdout)")
    if path != "-" and Path(path).is_dir():
        raise InputError(f"--output {path}: is a directory; give a file name")


def _write_predictions(path: str, records: list[dict], ids: list | None) -> None:
    """Write to a file (replaced atomically when it exists: a killed run leaves the previous one) or stdout."""
    id_key = _id_key(records)
    rows = [({id_key: ids[i]} if ids is not None else {}) | record for i, record in enumerate(records)]
    if path == "-":
        sys.stdout.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return
    if path.endswith(".json"):
        with atomic_file(path) as handle:
            handle.write(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        return
    if path.endswith(".jsonl"):
        with atomic_file(path) as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return
    from .policy import flat_columns  # per head label, confidence, scores, decision; then route, review_reasons

    with atomic_file(path, newline="") as handle:
        writer = csv.writer(handle)
        flat = [flat_columns(record) for record in records]
        header = ([id_key] if ids is not None else []) + (list(flat[0]) if flat else [])
        writer.writerow(header)
        for i, cells in enumerate(flat):
            writer.writerow(([ids[i]] if ids is not None else []) + list(cells.values()))


def _output_format(args: argparse.Namespace) -> str:
    """`table` for a person at a terminal, JSON lines when piped; files are written by their extension."""
    if args.format and args.output != "-":
        raise InputError(f"--format {args.format}: applies to --output - only; files are written by extension")
    return args.format or ("table" if args.output == "-" and sys.stdout.isatty() else "jsonl")


def cmd_predict(args: argparse.Namespace) -> int:
    _check_output(args.output)
    output_format = _output_format(args)
    router = _router_loader(args.lexical_weight)(args.model)
    text_columns = [c.strip() for c in args.text_columns.split(",")] if args.text_columns else router.text_columns
    texts, ids = _read_tickets(args, text_columns)
    records = router.route(texts, batch_size=args.batch_size, show_progress=args.output != "-",
                           top_k=args.top_k)
    if output_format == "table":
        from .console import prediction_lines

        print("\n".join(prediction_lines(records, texts, ids)))
    else:
        _write_predictions(args.output, records, ids)
    logger.info("Routed %d ticket(s) to %s", len(records), args.output)
    return 0


def cmd_shadow(args: argparse.Namespace) -> int:
    from .shadow import run_shadow

    # --lexical-weight 0 compares the encoders alone, undiluted by the n-gram heads both sides share.
    report = run_shadow(args.model, args.baselines, args.data, args.report, batch_size=args.batch_size,
                        latency_repeats=args.latency_repeats, n_bootstrap=args.bootstrap, seed=args.seed,
                        load_router=_router_loader(args.lexical_weight))
    print(json.dumps({"tasks": {t: r.get("verdict") for t, r in report["tasks"].items()},
                      "latency": report["latency"]}, indent=2))
    logger.info("Report written to %s", Path(args.report) / "report.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticket-router", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and errors.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="Fine-tune one encoder with a head per task.")
    _add_train_flags(train)
    train.set_defaults(func=cmd_train)

    baselines = commands.add_parser("baselines", help="Train one single-task model per task (same budget).")
    _add_train_flags(baselines)
    baselines.set_defaults(func=cmd_baselines)

    evaluate = commands.add_parser("evaluate", help="Accuracy and macro-F1 per task on a labeled file.")
    evaluate.add_argument("--model", required=True, help="Model directory.")
    evaluate.add_argument("--data", required=True, help="Labeled file (.csv, .tsv, .jsonl, .parquet).")
    evaluate.add_argument("--output", help="Write the metrics JSON here too.")
    evaluate.add_argument("--strict", action="store_true", help="Refuse labels the model never saw.")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--lexical-weight", type=float, help=_LEXICAL_WEIGHT_HELP)
    evaluate.add_argument("--encoding", help=_ENCODING_HELP)
    evaluate.add_argument("--plots", metavar="DIR", help="Write a risk-coverage PNG per task here.")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = commands.add_parser("predict", help="Route tickets: label, confidence and scores per task.")
    predict.add_argument("--model", required=True, help="Model directory.")
    predict.add_argument("--input", required=True, help="File (.csv, .tsv, .jsonl, .parquet, .txt) or - for stdin lines.")
    predict.add_argument("--output", required=True, help="Output .csv, .jsonl or .json (replaced if it exists), "
                         "or - for stdout.")
    predict.add_argument("--format", choices=["table", "jsonl"],
                         help="For --output -: one readable line per ticket, or JSON lines. Default: table on a "
                              "terminal, JSON lines when piped.")
    predict.add_argument("--encoding", help=_ENCODING_HELP)
    predict.add_argument("--text-columns", help="Override the model's text columns for this file.")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--lexical-weight", type=float, help=_LEXICAL_WEIGHT_HELP)
    predict.add_argument("--top-k", type=int, default=0, metavar="K", help="Also list each head's K best labels.")
    predict.set_defaults(func=cmd_predict)

    shadow = commands.add_parser("shadow", help="Compare the multi-task router with the single-task baselines.")
    shadow.add_argument("--model", required=True, help="Multi-task model directory.")
    shadow.add_argument("--baselines", required=True, help="Directory of single-task models (DIR/<task>/).")
    shadow.add_argument("--data", required=True, help="Tickets to compare on (gold labels optional).")
    shadow.add_argument("--report", required=True, help="Output directory for report.json, report.md, plots.")
    shadow.add_argument("--batch-size", type=int, default=32)
    shadow.add_argument("--latency-repeats", type=int, default=5)
    shadow.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the CI.")
    shadow.add_argument("--seed", type=int, default=0)
    shadow.add_argument("--lexical-weight", type=float, help=_LEXICAL_WEIGHT_HELP + " Applies to every model compared.")
    shadow.set_defaults(func=cmd_shadow)

    add_export_command(commands)  # serve: export.py
    add_serve_command(commands)  # serve: serve.py
    add_calibrate_command(commands)  # calibrate.py
    add_pretrain_command(commands)  # pretrain.py
    return parser


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # Read by transformers when a command imports it; importing it here would cost every command seconds.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    _setup_logging(args.quiet)
    try:
        return args.func(args)
    except InputError as error:
        print(f"ticket-router: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
