"""A saved router on a tiny random encoder, with lexical heads, built in about a second (no training run).

Shared by the export and serving tests: what they check (export parity, records, endpoints) does not depend on
the weights being trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import harbor_rows
from ticket_router.lexical import LexicalHeads, LexicalSettings
from ticket_router.tasks import TaskSpec

TEXT_COLUMNS = ["subject", "body"]
TASKS = {"category": "category", "urgency": "urgency", "queue": "queue"}


def harbor_texts(n: int, split: str = "validation") -> list[str]:
    return [f"{row['subject']}\n{row['body']}" for row in harbor_rows(split, n)]


def build_router_dir(backbone: Path, output: Path, pooling: str = "mean", max_length: int = 32) -> Path:
    from transformers import AutoModel, AutoTokenizer

    from ticket_router.modeling import MultiTaskRouterModel

    rows = harbor_rows("train", 80)
    specs = [TaskSpec.from_values(name, column, [r[column] for r in rows], "harbor") for name, column in TASKS.items()]
    model = MultiTaskRouterModel.from_backbone(AutoModel.from_pretrained(backbone), specs, TEXT_COLUMNS,
                                               pooling=pooling, max_length=max_length)
    model.save_pretrained(output)
    AutoTokenizer.from_pretrained(backbone).save_pretrained(output)
    # Random lexical heads over the training words (fitting them takes seconds; their values do not matter here).
    vocabulary = sorted({word for r in rows for word in f"{r['subject']} {r['body']}".lower().split()})
    rng = np.random.default_rng(0)
    weights = {s.name: (rng.normal(size=(s.num_labels, len(vocabulary))).astype(np.float32),
                        np.zeros(s.num_labels, dtype=np.float32)) for s in specs}
    settings = LexicalSettings(ngram_max=1, char_ngram_max=0)
    LexicalHeads(settings, {"word": vocabulary}, {"word": np.ones(len(vocabulary))}, weights).save(output)
    return output
