"""Shared fixtures: tiny random encoders with a locally built tokenizer (no downloads), tiny ticket tables."""

from __future__ import annotations

import csv
import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
HARBOR = REPO / "data" / "harbor"

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = list(string.ascii_lowercase + string.digits) + list(".,!?-#:")


def write_vocab(path: Path) -> Path:
    """A character-level WordPiece vocabulary: every word splits into known pieces, 85 entries in all."""
    pieces = _SPECIALS + _CHARS + ["##" + c for c in string.ascii_lowercase + string.digits]
    path.write_text("\n".join(pieces) + "\n")
    return path


def make_tiny_backbone(directory: Path, kind: str = "distilbert", dropout: float = 0.1) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast, DistilBertConfig, DistilBertModel
    from transformers import DistilBertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(directory / "vocab.txt")
    if kind == "distilbert":
        config = DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                  max_position_embeddings=128, dropout=dropout, attention_dropout=dropout)
        model, tokenizer = DistilBertModel(config), DistilBertTokenizerFast(vocab=str(vocab))
    elif kind == "bert":
        config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=128)
        model, tokenizer = BertModel(config), BertTokenizerFast(vocab=str(vocab))
    else:
        raise ValueError(kind)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def distilbert_dir(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-distilbert"), "distilbert")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def harbor_rows(split: str, n: int) -> list[dict]:
    with (HARBOR / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
        return [row for _, row in zip(range(n), csv.DictReader(handle))]
