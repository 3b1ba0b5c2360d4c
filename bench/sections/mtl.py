"""Section `mtl`: issue 12's multi-task balancing methods against uncertainty weighting and the single-task
encoders (`bench/mtl_protocol.py`), on Harbor by default (--mtl-config/-train/-validation/-test for another set).

Off in the default run (every method is a full training: hours on 2 cores); on in --full, two methods at a few
steps in --quick, and `--only mtl` runs it alone. Each config's measurement is kept under its name (the config
file's stem) beside those of other configs from earlier `--only mtl` runs: Harbor and the support tickets are two
runs of hours each, and the tables show both.
"""

from __future__ import annotations

import logging
from typing import Any

from ticket_router.config import build_config

from bench.machine import machine_line
from bench.mtl_protocol import MtlProtocol, Reuse, run_protocol
from bench.results import now
from bench.settings import Bench, shown_path

logger = logging.getLogger(__name__)


def mtl_protocol(bench: Bench) -> MtlProtocol:
    """The protocol of this bench run: the mtl config with its files, budget and backbone; singles for every head."""
    mtl = bench.mtl
    workdir = bench.out / "mtl" / mtl.config_path.stem  # each data set's trainings apart, for --reuse
    overrides = {"train": mtl.train and str(mtl.train), "validation": mtl.validation and str(mtl.validation),
                 "backbone": mtl.backbone, "max_steps": mtl.max_steps if mtl.max_steps > 0 else None,
                 "output": str(workdir)}  # each run's own folder replaces it
    base = build_config(str(mtl.config_path), overrides)
    return MtlProtocol(base=base, config_path=shown_path(mtl.config_path), test=str(mtl.test), workdir=workdir,
                       methods=mtl.methods, single=tuple(base.tasks), resamples=bench.bootstrap,
                       reuse=Reuse.SAME_CONFIG if bench.reuse else Reuse.NONE)


def section_mtl(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    protocol = mtl_protocol(bench)
    logger.info("mtl: %d method(s) and %d single-task encoder(s) on %s, tested on %s", len(protocol.methods),
                len(protocol.single), protocol.base.train, protocol.test)
    started = now()
    measured = run_protocol(protocol)
    for key in ("train", "validation", "test"):  # as the tables show them: no machine paths
        measured[key] = shown_path(measured[key]) if measured[key] else None
    measured.update(budget={"epochs": protocol.base.epochs, "max_steps": protocol.base.max_steps},
                    settings=bench.mtl.describe(), workdir=shown_path(protocol.workdir),
                    run={"command": bench.command, "started": started, "machine": machine_line(bench.machine)})
    earlier = results["sections"].get("mtl", {}).get("sets", {})
    return {"sets": {**earlier, bench.mtl.config_path.stem: measured}}
