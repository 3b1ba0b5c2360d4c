"""The bench's settings: the profiles (--quick, default, --full), the resolved `Bench` every section reads.

Profiles, sized from the per-run times recorded in results.json on 2 CPU cores (MiniLM-L6, 5 epochs, length
grouping: one router ~21 min, the three single-task models of one seed ~56 min together; BENCHMARKS.md has the
arithmetic):

  default  1 router seed, the single-task models of that seed, shadow, speed, reference: ~1 h 30 min
  --full   3 router seeds (the spread over seeds) and the ablations at half an epoch: ~2 h 35 min; plus mtl
  --quick  1 seed at 0.1 epoch, every section: ~10 min (a smoke run, not figures to quote); its `mtl` section
           trains two methods and the single-task encoders for a few steps
  mtl      (--full, --quick, --only mtl) issue 12's balancing methods on Harbor by default (`MtlSettings`): each
           method and each head's single-task encoder is a training at the config's own budget (Harbor: 282 steps,
           ~14 min on 2 loaded cores), so all of METHODS takes hours

`--seeds`, `--single-seeds`, `--epochs` and `--only` override any profile.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ticket_router.config import TrainConfig, build_config, load_yaml_config, parse_number_pairs
from ticket_router.errors import InputError

from bench.machine import machine_info

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

# Defaults for the shared support-ticket set; a config that names its own tasks/text columns wins.
DEFAULT_TASKS = {"category": "type", "urgency": "priority", "queue": "queue"}
DEFAULT_TEXT_COLUMNS = ["subject", "body"]
FIRST_SEED = 42
ABLATION_EPOCHS = 0.5  # ablations rank variants early in training: 7 trainings at 5 epochs would take ~2.5 h
FIRST_TIMED_STEP = 5  # steps before this one pay for allocator growth and lazy init; they are not timed
DEFAULT_MISSING = "queue=0.4,urgency=0.2"
# With lexical heads fused, metrics.json scores each part alone too (training.evaluation_metrics).
PARTS = ("encoder_only", "lexical_only")


@dataclass(frozen=True)
class Profile:
    """Defaults of one kind of run; command-line flags override each."""

    name: str
    seeds: int
    single_seeds: int
    epochs: float | None  # None: the recommended config's own budget
    speed_steps: int
    speed_texts: int | None  # validation tickets for inference timing; None: all
    sections_off: tuple[str, ...] = ()  # left out unless named with --only
    mtl_methods: tuple[str, ...] | None = None  # None: every entry of bench.mtl_protocol.METHODS
    mtl_max_steps: int = -1  # > 0: the mtl trainings' budget instead of their config's


PROFILES = {
    "quick": Profile("quick", seeds=1, single_seeds=1, epochs=0.1, speed_steps=30, speed_texts=256,
                     mtl_methods=("uncertainty", "gradnorm"), mtl_max_steps=10),
    "default": Profile("default", seeds=1, single_seeds=1, epochs=None, speed_steps=60, speed_texts=None,
                       sections_off=("ablations", "mtl")),
    "full": Profile("full", seeds=3, single_seeds=1, epochs=None, speed_steps=60, speed_texts=None),
}


def profile_name(args: argparse.Namespace) -> str:
    if args.quick and args.full:
        raise InputError("--quick and --full exclude each other")
    return "quick" if args.quick else "full" if args.full else "default"


def shown_path(path: Path) -> str:
    """A path as results.json and BENCHMARKS.md show it: relative to the repository when it can be (machine-free)."""
    try:
        relative = os.path.relpath(Path(path).resolve(), REPO)
    except ValueError:  # another drive on Windows
        return str(path)
    # Inside the repository or beside it (../shared/data): relative; elsewhere (/tmp) the absolute path says more.
    return str(path) if relative.startswith(os.pardir + os.sep + os.pardir) else relative


@dataclass(frozen=True)
class Budget:
    """A training budget: epochs, unless max_steps > 0 (which wins, as in the Trainer)."""

    epochs: float
    max_steps: int = -1

    def describe(self) -> str:
        return f"{self.max_steps} steps" if self.max_steps > 0 else f"{self.epochs:g} epoch(s)"


HARBOR_CONFIG = "configs/harbor.yaml"
HARBOR_DIR = "data/harbor"


@dataclass(frozen=True)
class MtlSettings:
    """What the `mtl` section measures: a config (Harbor's by default), its data files, a held-out test file."""

    config_path: Path
    train: Path | None  # None: the config's own file
    validation: Path | None
    test: Path
    methods: tuple[str, ...]  # the first is the reference
    max_steps: int  # > 0: instead of the config's budget
    backbone: str | None  # --backbone, else the config's

    def describe(self) -> dict[str, Any]:
        shown = {name: shown_path(getattr(self, name)) if getattr(self, name) else None
                 for name in ("config_path", "train", "validation", "test")}
        return {**shown, "methods": list(self.methods), "max_steps": self.max_steps, "backbone": self.backbone}


def mtl_settings(args: argparse.Namespace, profile: Profile) -> MtlSettings:
    """--mtl-* flags over the profile: Harbor and its files unless --mtl-config names another config, which then
    needs --mtl-test (a labeled file its trainings never see; e.g. a holdout split off the support tickets)."""
    from bench.mtl_protocol import METHODS, check_methods  # here: `--help` needs no torch

    harbor = args.mtl_config is None
    if not harbor and args.mtl_test is None:
        raise InputError(f"--mtl-config {args.mtl_config}: give --mtl-test FILE too (labeled tickets no training "
                         "sees, e.g. a holdout split off the training file with --mtl-train on the rest)")
    methods = tuple(m for m in args.mtl_methods.split(",") if m) if args.mtl_methods else profile.mtl_methods
    methods = methods or tuple(METHODS)
    check_methods(methods, "--mtl-methods")

    def data_file(name: str) -> Path | None:  # a given file, else Harbor's (or, for another config, its own)
        value = getattr(args, f"mtl_{name}")
        if value:
            return Path(value).expanduser()
        return REPO / HARBOR_DIR / f"{name}.csv" if harbor else None

    return MtlSettings(
        config_path=repo_path(args.mtl_config, HARBOR_CONFIG), train=data_file("train"),
        validation=data_file("validation"), test=data_file("test"),
        methods=methods, max_steps=args.max_steps if args.max_steps is not None else profile.mtl_max_steps,
        backbone=args.backbone)


@dataclass(frozen=True)
class Bench:
    """Everything a section needs, resolved once from the command line and the recommended config."""

    base: TrainConfig
    config_path: Path
    data_dir: Path
    out: Path
    seeds: tuple[int, ...]
    single_seeds: tuple[int, ...]  # the first seeds: single-task models (and shadow statistics) for these only
    budget: Budget
    ablation_budget: Budget
    speed_steps: int
    speed_texts: int | None
    bootstrap: int
    missing_rates: dict[str, float]
    profile: str  # "quick", "default" or "full": the defaults the command line started from
    reuse: bool  # keep models of --out trained with the identical config; refit their lexical heads only
    command: str
    mtl: MtlSettings
    machine: dict[str, Any] = field(repr=False)

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    @property
    def tasks(self) -> dict[str, str]:
        return dict(self.base.tasks)

    def run_config(self, output: Path, seed: int, budget: Budget, **changes: Any) -> TrainConfig:
        """The recommended config for one training: its own output, seed and budget, plus `changes`."""
        config = replace(self.base, output=str(output), seed=seed, epochs=budget.epochs, max_steps=budget.max_steps,
                         keep_checkpoints=False, resume=False, **changes)
        config.validate()
        return config

    def model_dirs(self, seed: int) -> tuple[Path, Path]:
        return self.out / "router" / f"seed{seed}", self.out / "single" / f"seed{seed}"


def repo_path(value: str | None, default: str) -> Path:
    """A given path is relative to the working directory; a default one to the repository root."""
    return Path(value).expanduser() if value else REPO / default


def _parse_rates(text: str) -> dict[str, float]:
    rates = parse_number_pairs(text, "--missing")
    for task, rate in rates.items():
        if not 0 <= rate < 1:
            raise InputError(f"--missing {task}={rate}: a rate must be in [0, 1)")
    return rates


def load_base_config(config_path: Path, data_dir: Path, out: Path, backbone: str | None) -> TrainConfig:
    """The recommended config with this data set's files; tasks/text columns default to the support-ticket set."""
    raw = load_yaml_config(config_path)
    overrides: dict[str, Any] = {"train": str(data_dir / "train.csv"), "validation": str(data_dir / "validation.csv"),
                                 "output": str(out), "backbone": backbone}
    for name in ("train", "validation"):
        if not Path(overrides[name]).is_file():
            raise InputError(f"--data-dir {data_dir}: no {name}.csv there")
    if "tasks" not in raw:
        logger.info("%s names no tasks: using %s", config_path, DEFAULT_TASKS)
        overrides["tasks"] = dict(DEFAULT_TASKS)
    if "text_columns" not in raw:
        overrides["text_columns"] = list(DEFAULT_TEXT_COLUMNS)
    return build_config(str(config_path), overrides)


def make_bench(args: argparse.Namespace, command: str) -> Bench:
    profile = PROFILES[profile_name(args)]
    out = repo_path(args.out, "bench/out")
    config_path = repo_path(args.config, "configs/support-tickets.yaml")
    data_dir = repo_path(args.data_dir, "../shared/data/support-tickets")
    base = load_base_config(config_path, data_dir, out, args.backbone)
    # Outside --quick the bench trains with the recommended config's own budget: the figures must describe it.
    quick = profile.epochs is not None
    max_steps = args.max_steps if args.max_steps is not None else (-1 if quick else base.max_steps)
    epochs = args.epochs if args.epochs is not None else (profile.epochs if quick else base.epochs)
    ablation_epochs = args.ablation_epochs if args.ablation_epochs is not None else min(epochs, ABLATION_EPOCHS)
    n_seeds = args.seeds if args.seeds is not None else profile.seeds
    speed_steps = args.speed_steps if args.speed_steps is not None else profile.speed_steps
    n_single = args.single_seeds if args.single_seeds is not None else min(n_seeds, profile.single_seeds)
    if not 1 <= n_single <= n_seeds:
        raise InputError(f"--single-seeds={n_single} must be between 1 and --seeds ({n_seeds})")
    if n_seeds < 1 or speed_steps <= FIRST_TIMED_STEP or args.bootstrap < 1:
        raise InputError(f"need --seeds >= 1, --speed-steps > {FIRST_TIMED_STEP} and --bootstrap >= 1")
    missing = _parse_rates(args.missing)
    unknown = sorted(set(missing) - set(base.tasks))
    if unknown:
        raise InputError(f"--missing names task(s) {unknown}; the config's tasks are {sorted(base.tasks)}")
    return Bench(
        base=base, config_path=config_path, data_dir=data_dir, out=out,
        seeds=tuple(FIRST_SEED + i for i in range(n_seeds)),
        single_seeds=tuple(FIRST_SEED + i for i in range(n_single)),
        budget=Budget(epochs, max_steps), ablation_budget=Budget(ablation_epochs, max_steps),
        speed_steps=speed_steps,
        speed_texts=args.speed_texts if args.speed_texts is not None else profile.speed_texts,
        bootstrap=args.bootstrap, missing_rates=missing, profile=profile.name, reuse=args.reuse, command=command,
        mtl=mtl_settings(args, profile), machine=machine_info(),
    )


def settings(bench: Bench) -> dict[str, Any]:
    raw = load_yaml_config(bench.config_path)
    return {
        "quick": bench.quick, "profile": bench.profile, "config": shown_path(bench.config_path),
        "data_dir": shown_path(bench.data_dir), "out": shown_path(bench.out),
        "backbone": bench.base.backbone or "default (packaged all-MiniLM-L6-v2)",
        "tasks": bench.tasks, "text_columns": bench.base.text_columns, "seeds": list(bench.seeds),
        "single_seeds": list(bench.single_seeds),
        "budget": asdict(bench.budget), "ablation_budget": asdict(bench.ablation_budget),
        "config_budget": {"epochs": raw.get("epochs", TrainConfig.epochs), "max_steps": raw.get("max_steps", -1)},
        "batch_size": bench.base.batch_size, "max_length": bench.base.max_length,
        "speed_steps": bench.speed_steps, "speed_texts": bench.speed_texts, "bootstrap": bench.bootstrap,
        "missing_rates": bench.missing_rates, "mtl": bench.mtl.describe(),
    }
