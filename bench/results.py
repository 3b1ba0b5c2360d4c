"""`bench/results.json`: loaded (merged with --only), saved after every section so a crash loses nothing done."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ticket_router.errors import InputError
from ticket_router.serialization import json_safe


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_results(path: Path, merge: bool) -> dict[str, Any]:
    """With --only, the sections of an earlier run are kept and the chosen ones replaced."""
    if merge and path.is_file():
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"--results {path}: not valid JSON ({error}); move it away to start afresh") from None
        results.setdefault("errors", {})
        return results
    return {"schema": 1, "sections": {}, "errors": {}}


def save_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(results), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
