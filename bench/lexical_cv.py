"""Cross-validate lexical-head settings on the training file alone (the validation file is not read).

Why: the lexical heads' defaults (word 1-2 grams + char_wb 2-5 grams, C=10) should be chosen on the training
rows, not by scoring variants on the validation set that the benchmark then reports. For each task this prints
the 5-fold out-of-fold macro-F1 of each variant, built exactly as `LexicalHeads.fit` builds it.

    python -m bench.lexical_cv --config configs/support-tickets.yaml   # from the repository root; ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.model_selection import StratifiedKFold

from ticket_router.config import TrainConfig, load_yaml_config
from ticket_router.errors import InputError
from ticket_router.lexical import LexicalHeads, LexicalSettings
from ticket_router.metrics import macro_f1
from ticket_router.training import prepare_data

VARIANTS = {
    "word 1-2, C=1": LexicalSettings(char_ngram_max=0, c=1.0),
    "word 1-2, C=10": LexicalSettings(char_ngram_max=0),
    "word 1-2 + char 2-5, C=1": LexicalSettings(c=1.0),
    "word 1-2 + char 2-5, C=10 (default)": LexicalSettings(),
}


def out_of_fold_f1(texts: list[str], labels: np.ndarray, spec, settings: LexicalSettings, folds: int, seed: int) -> float:
    """Macro-F1 of predictions made by heads fitted on the other folds, over the rows labeled for the task."""
    rows = np.flatnonzero(labels >= 0)
    predicted = np.empty(len(rows), dtype=int)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for fit_idx, held_idx in splitter.split(rows, labels[rows]):
        heads = LexicalHeads.fit([texts[i] for i in rows[fit_idx]], labels[rows[fit_idx], None], [spec], settings)
        proba = heads.predict_proba([texts[i] for i in rows[held_idx]])[spec.name]
        predicted[held_idx] = proba.argmax(axis=1)
    return macro_f1(labels[rows], predicted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/lexical_cv.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/support-tickets.yaml", help="TrainConfig YAML (train file, tasks).")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = replace(TrainConfig(**load_yaml_config(args.config)), validation=None)  # no output needed
    if not config.train or not config.tasks:
        raise InputError(f"{args.config}: needs 'train' and 'tasks'")
    data = prepare_data(config)
    print(f"{args.folds}-fold out-of-fold macro-F1 on {config.train} ({len(data.train_texts)} rows)\n")
    print("| variant | " + " | ".join(spec.name for spec in data.specs) + " |")
    print("| --- |" + " ---: |" * len(data.specs))
    for name, settings in VARIANTS.items():
        settings = replace(settings, class_weight_balanced=config.class_weights)
        scores = [out_of_fold_f1(data.train_texts, data.train_labels[:, t], spec, settings, args.folds, args.seed)
                  for t, spec in enumerate(data.specs)]
        print(f"| {name} | " + " | ".join(f"{s:.3f}" for s in scores) + " |", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as error:  # bad config or data: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
