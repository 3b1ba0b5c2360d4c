"""What a model directory must hold, checked before loading, and which existing directories a save may replace.

A copy cut short (a failed download, a full disk) is refused with one line naming the first missing file, rather
than a library traceback, or worse, a router that silently routes without its lexical heads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .errors import InputError
from .lexical import CONFIG_NAME as LEXICAL_CONFIG
from .lexical import WEIGHTS_NAME as LEXICAL_WEIGHTS

SETTINGS_NAME = "router.json"  # `RouterSettings`
MODEL_TYPE = "ticket_router"  # RouterConfig.model_type, without importing torch
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
# Files that only make sense together: one without the other is a damaged copy.
PAIRS = ((LEXICAL_CONFIG, LEXICAL_WEIGHTS),)
TRAINING_LEFTOVERS = {"checkpoints"}  # what a training writes into its output before the model is saved


def _model_type(config: Path) -> str | None:
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and _model_type(path / "config.json") == MODEL_TYPE


def _fused_weight(path: Path) -> float:
    try:
        return float(json.loads((path / SETTINGS_NAME).read_text()).get("lexical_weight", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0.0


def check_complete(path: Path) -> None:
    """Refuse a directory that is not a whole ticket_router model, naming what is missing."""
    if not path.is_dir():
        raise InputError(f"{path}: no such model directory")
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a ticket_router model directory (no config.json)")
    missing = []
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(WEIGHT_FILES[0])
    if not (path / "tokenizer_config.json").is_file():
        missing.append("tokenizer_config.json")
    elif not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(TOKENIZER_FILES[0])
    if _fused_weight(path) > 0 and not (path / LEXICAL_CONFIG).is_file():
        missing.append(LEXICAL_CONFIG)
    for first, second in PAIRS:
        if (path / first).is_file() != (path / second).is_file():
            missing.append(second if (path / first).is_file() else first)
    if missing:
        raise InputError(f"{path}: incomplete model directory: {', '.join(missing)} missing "
                         "(copy the whole directory again, or retrain)")


def check_replaceable(path: Path, owned: Callable[[Path], bool] = is_model_dir,
                      what: str = "a ticket_router model directory") -> None:
    """A save may replace a directory of its own kind (`owned`: by default a model directory) or a training's own
    leftovers, never someone's other files."""
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory; choose another output")
    entries = sorted(p.name for p in path.iterdir())
    if set(entries) <= TRAINING_LEFTOVERS or owned(path):
        return
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise InputError(f"{path}: exists and is not {what} (it holds {shown}); choose a new or empty output directory")
