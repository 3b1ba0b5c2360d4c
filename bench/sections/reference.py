"""Section `reference`: majority class and TF-IDF + logistic regression, one model per task (the issue's bar)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from ticket_router.data import join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.metrics import label_scores, mean_macro_f1
from ticket_router.tasks import canonical_label

from bench.settings import Bench

logger = logging.getLogger(__name__)


def train_and_validation(bench: Bench) -> tuple[Any, Any, list[str], list[str]]:
    """Both tables of the bench's data and their joined ticket texts."""
    cfg = bench.base
    train, val = read_table(cfg.train), read_table(cfg.validation)
    return (train, val, join_text_columns(train, cfg.text_columns, cfg.train),
            join_text_columns(val, cfg.text_columns, cfg.validation))


def labeled_rows(texts: list[str], column: list[Any]) -> tuple[list[str], list[str]]:
    """The texts and canonical labels of the rows labeled for one task (blank cells mean "not labeled")."""
    pairs = [(text, canonical_label(value)) for text, value in zip(texts, column)]
    kept = [(text, label) for text, label in pairs if label is not None]
    return [t for t, _ in kept], [label for _, label in kept]


def _majority(train_y: list[str], val_y: list[str]) -> dict[str, Any]:
    label = Counter(train_y).most_common(1)[0][0]
    return {"label": label, **label_scores(val_y, [label] * len(val_y))}


def tfidf_model():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000))


def _tfidf(train_x: list[str], train_y: list[str], val_x: list[str], val_y: list[str]) -> dict[str, Any]:
    """The issue's classical reference, built with scikit-learn alone (not through ticket_router).

    Settings: word 1-2 grams in at least 2 tickets, sublinear tf, balanced logistic regression with C=10. They
    reproduce the issue's row (0.791 / 0.449 / 0.328 on type / priority / queue) to the third digit; the defaults
    (min_df=1, C=1) score lower (0.770 / 0.431 / 0.298) and would make the bar easier than the issue's.
    """
    model = tfidf_model()
    started = time.perf_counter()
    model.fit(train_x, train_y)
    fit_s = time.perf_counter() - started
    return {**label_scores(val_y, model.predict(val_x)), "fit_s": round(fit_s, 3), "n_train": len(train_y)}


def section_reference(bench: Bench, results: dict[str, Any]) -> dict[str, Any]:
    """Majority class and TF-IDF (1-2 grams, min_df 2, sublinear tf) + balanced logistic regression (C=10), per task."""
    cfg = bench.base
    train, val, train_texts, val_texts = train_and_validation(bench)
    tasks = {}
    for task, column in bench.tasks.items():
        train_x, train_y = labeled_rows(train_texts, train[column])
        val_x, val_y = labeled_rows(val_texts, val[column])
        if not val_y:
            raise InputError(f"{cfg.validation}: no row labeled for task {task!r} (column {column!r})")
        tasks[task] = {"column": column, "majority": _majority(train_y, val_y),
                       "tfidf": _tfidf(train_x, train_y, val_x, val_y)}
        logger.info("reference %s: majority F1 %.3f, TF-IDF F1 %.3f", task,
                    tasks[task]["majority"]["macro_f1"], tasks[task]["tfidf"]["macro_f1"])
    return {
        "n_train": len(train), "n_validation": len(val), "tasks": tasks,
        "majority_mean_macro_f1": mean_macro_f1({t: v["majority"] for t, v in tasks.items()}),
        "tfidf_mean_macro_f1": mean_macro_f1({t: v["tfidf"] for t, v in tasks.items()}),
        "tfidf_fit_s": round(sum(v["tfidf"]["fit_s"] for v in tasks.values()), 3),
    }
