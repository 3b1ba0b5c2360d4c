"""Section `mtl`: issue 12's multi-task balancing methods against uncertainty weighting and the single-task
encoders (`bench/mtl_protocol.py`), on Harbor by default (--mtl-config/-train/-validation/-test for another set).

Off in the default run (every method is a full training: hours on 2 cores); on in --full, two methods at a few
steps in --quick, and `--only mtl` runs it alone.
"""

from __future__ import annotations

import logging
from typing import Any

from ticket_router.config import build_config

from bench.mtl_protocol import MtlProtocol, Reuse, run_protocol
from bench.settings import Bench, shown_path

logger = logging.getLogger(__name__)


def mtl_protocol(bench: Bench) -> MtlProtocol:
    """The protocol of this bench run: the mtl config with its files, budget and backbone; singles for every head."""
    mtl = bench.mtl
    overrides = {"train": mtl.train and str(mtl.train), "validation": mtl.validation and str(mtl.validation),
                 "backbone": mtl.backbone, "max_steps": mtl.max_steps if mtl.max_steps > 0 else None,
                 "output": str(bench.out / "mtl")}  # each run's own folder replaces it
    base = build_config(str(mtl.config_path), overrides)
    return MtlProtocol(base=base, config_path=shown_path(mtl.config_path), test=str(mtl.test),
                       workdir=bench.out / "mtl", methods=mtl.methods, single=tuple(base.tasks),
                       resamples=bench.bootstrap, reuse=Reuse.SAME_CONFIG if bench.reuse else Reuse.NONE)


def section_mtl(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    protocol = mtl_protocol(bench)
    logger.info("mtl: %d method(s) and %d single-task encoder(s) on %s, tested on %s", len(protocol.methods),
                len(protocol.single), protocol.base.train, protocol.test)
    measured = run_protocol(protocol)
    budget = {"epochs": protocol.base.epochs, "max_steps": protocol.base.max_steps}
    for key in ("train", "validation", "test"):  # as the tables show them: no machine paths
        measured[key] = shown_path(measured[key]) if measured[key] else None
    return {**measured, "budget": budget, "settings": bench.mtl.describe()}
