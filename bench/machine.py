"""The machine a bench run measures on: CPU, cores, memory and library versions, recorded beside every figure."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import psutil
    import torch  # here, not at the top: rendering the report needs no torch
    import transformers

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def machine_line(machine: dict[str, Any]) -> str:
    return (f"{machine['cpu']}, {machine['cpu_usable']} usable CPU core(s) of {machine['cpu_count']}, "
            f"{machine['memory_gib']} GiB RAM, torch {machine['torch']} ({machine['torch_threads']} threads), "
            f"transformers {machine['transformers']}, GPU: {machine['gpu'] or 'none'}")
