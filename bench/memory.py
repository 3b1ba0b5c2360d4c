"""Peak memory of routing in a fresh process: `python -m bench.memory MODEL_DIRS_JSON TEXTS_JSON BATCH` prints JSON.

Runs in a fresh interpreter per setup, so each peak is that setup's own. On Linux the peak is VmHWM, the
high-water mark of this process's own address space: ru_maxrss survives fork + exec there, so a probe started by
the bench (itself holding GBs after training) would report the bench's peak, not its own. The peak can be set
while importing torch/transformers, which hides small models: the RSS still held after routing is reported too,
and the "imports only" setup (no model directory) is the baseline to subtract.

The probe's own imports are those of a routing process (torch, ticket_router.router), nothing of the bench.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def probe(model_dirs: list[str], texts: list[str], batch_size: int) -> dict[str, Any]:
    """Load the routers, route the texts once; this process's peak RSS, RSS after routing, CUDA peak."""
    import psutil
    import torch

    from ticket_router.router import Router

    routers = [Router.from_pretrained(path) for path in model_dirs]
    for router in routers:
        router.predict_proba(texts, batch_size=batch_size)
    cuda = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    return {"peak_rss_bytes": int(peak_rss_bytes()), "rss_after_bytes": int(psutil.Process().memory_info().rss),
            "cuda_peak_allocated_bytes": cuda}


def peak_memory(model_dirs: list[Path], texts_path: Path, batch_size: int = 32) -> dict[str, Any]:
    """Run the probe in a fresh interpreter (from the repository root, so `bench` and `ticket_router` import)."""
    command = [sys.executable, "-m", "bench.memory", json.dumps([str(p) for p in model_dirs]), str(texts_path),
               str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {[p.name for p in model_dirs]} failed "
                           f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    model_dirs, texts_path, batch_size = json.loads(argv[0]), argv[1], int(argv[2])
    texts = json.loads(Path(texts_path).read_text(encoding="utf-8"))
    print(json.dumps(probe(model_dirs, texts, batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
