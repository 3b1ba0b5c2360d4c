"""The bench's sections, in the order they run (later ones read the models earlier ones trained).

A section is a function `(bench: Bench, results: dict) -> dict` that returns its JSON-able figures; `results` holds
the sections already recorded (ablations reuse the router's runs). Adding a section is one module here and one line
in `SECTIONS`; its table goes into `bench/report.py`'s `TABLES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# name -> "module:function", imported only when the section runs (the gpu section needs no import on a CPU run).
SECTIONS: dict[str, str] = {
    "reference": "bench.sections.reference:section_reference",
    "router": "bench.sections.router:section_router",
    "single": "bench.sections.single:section_single",
    "shadow": "bench.sections.shadow:section_shadow",
    "ablations": "bench.sections.ablations:section_ablations",
    "speed": "bench.sections.speed:section_speed",
    "gpu": "bench.sections.gpu:section_gpu",
    "mtl": "bench.sections.mtl:section_mtl",  # independent of the others and the longest: last
}

Section = Callable[[Any, dict[str, Any]], dict[str, Any]]


def section_function(name: str) -> Section:
    module, _, function = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), function)
