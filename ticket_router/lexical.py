"""Lexical heads: one TF-IDF n-gram logistic regression per task, fused with the encoder heads' probabilities.

The features are word 1-2 grams (the benchmark issue's TF-IDF reference) plus character 2-5 grams inside word
boundaries, which match German compounds and inflections, typos and product codes piecewise.

Why a router wants them: a small English encoder reads German tickets, product codes and desk jargon as
fragments of word pieces, and truncates long tickets at `max_length`; an n-gram model reads every word of the
whole ticket verbatim. Where their errors differ, the average of their probability vectors beats both by a
margin (Harbor in BENCHMARKS.md); where the encoder is the weaker reader of the same cues, it still beats both on
the mean, by less (the shared en/de tickets). The lexical part costs seconds to fit and
about 1 ms per ticket to run (0.1 ms with word n-grams alone); `lexical_weight: 0` turns it off.

Saved beside the weights without pickle (nothing executable in a model directory): `lexical.json` holds the
settings, the vocabularies and each task's classes; `lexical.safetensors` holds the idf vectors and each task's
coefficient matrix and intercepts. Probabilities are recomputed as softmax(X W^T + b), which is exactly what
scikit-learn's multinomial (and, with a zero row for the first class, binary) `predict_proba` computes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .errors import InputError
from .tasks import TaskSpec

logger = logging.getLogger(__name__)

CONFIG_NAME = "lexical.json"
WEIGHTS_NAME = "lexical.safetensors"
# A class absent from a task's labeled rows (possible with drop_partial_rows) gets this logit: probability ~0.
ABSENT_CLASS_LOGIT = -1e4


@dataclass
class LexicalSettings:
    """How the n-gram models are built and fused. With `char_ngram_max=0` they are the benchmark issue's TF-IDF row."""

    weight: float = 0.5  # share of the lexical probabilities in the fused ones
    ngram_max: int = 2  # word 1..n-grams
    # Character n-grams inside word boundaries, beside the word n-grams (0 turns them off). They read German
    # compounds, inflections, typos and product codes that whole-word n-grams split into unseen terms.
    char_ngram_min: int = 2
    char_ngram_max: int = 5
    min_df: int = 2  # a term must occur in 2 tickets: halves the vocabulary, drops one-off typos and ids
    max_features: int = 200_000  # bounds the model's size on large ticket sets
    sublinear_tf: bool = True
    c: float = 10.0  # inverse L2 strength of the logistic regression
    class_weight_balanced: bool = True  # mirrors `class_weights` of the encoder heads
    max_iter: int = 2000

    @classmethod
    def from_dict(cls, data: dict) -> "LexicalSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("Ignoring unknown lexical settings %s (saved by a newer ticket_router?)", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})


def _vectorizer(settings: LexicalSettings, analyzer: str, vocabulary: dict[str, int] | None = None):
    """A TF-IDF vectorizer for word or char_wb n-grams; with a vocabulary, one that only transforms."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    ngrams = (1, settings.ngram_max) if analyzer == "word" else (settings.char_ngram_min, settings.char_ngram_max)
    return TfidfVectorizer(
        analyzer=analyzer, ngram_range=ngrams, min_df=1 if vocabulary else settings.min_df,
        max_features=None if vocabulary else settings.max_features, sublinear_tf=settings.sublinear_tf,
        vocabulary=vocabulary,
    )


def _analyzers(settings: LexicalSettings) -> list[str]:
    return ["word", "char_wb"] if settings.char_ngram_max > 0 else ["word"]


def _features(vectorizers: Sequence, texts: list[str], fit: bool = False):
    """The texts' TF-IDF rows, the word block then the char block, as one sparse matrix."""
    import scipy.sparse

    blocks = [v.fit_transform(texts) if fit else v.transform(texts) for v in vectorizers]
    return blocks[0] if len(blocks) == 1 else scipy.sparse.hstack(blocks, format="csr")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class LexicalHeads:
    """Per task, W (num_labels, n_terms) and b (num_labels,) over one shared TF-IDF vocabulary.

    `vocabularies` and `idfs` hold one entry per analyzer ("word", and "char_wb" unless turned off); the terms of
    W's columns are the word terms followed by the char terms.
    """

    def __init__(self, settings: LexicalSettings, vocabularies: dict[str, list[str]], idfs: dict[str, np.ndarray],
                 weights: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.settings = settings
        self.vocabularies = vocabularies
        self.weights = weights  # task name -> (W, b); a task without a lexical model is absent
        self._vectorizers = []
        for analyzer, terms in vocabularies.items():
            vectorizer = _vectorizer(settings, analyzer, {term: i for i, term in enumerate(terms)})
            vectorizer.idf_ = idfs[analyzer]
            self._vectorizers.append(vectorizer)

    @property
    def n_terms(self) -> int:
        return sum(len(terms) for terms in self.vocabularies.values())

    @property
    def tasks(self) -> list[str]:
        return list(self.weights)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: np.ndarray, specs: Sequence[TaskSpec],
            settings: LexicalSettings | None = None) -> "LexicalHeads":
        """Fit the vocabulary on all texts and one logistic regression per task on the rows labeled for it."""
        from sklearn.linear_model import LogisticRegression

        settings = settings or LexicalSettings()
        vectorizers = [_vectorizer(settings, analyzer) for analyzer in _analyzers(settings)]
        try:
            features = _features(vectorizers, list(texts), fit=True)
        except ValueError as error:  # e.g. "empty vocabulary" on a tiny file whose words all occur once
            raise InputError(f"lexical heads: no n-gram of the training texts is usable ({error})") from None
        weights = {}
        for t, spec in enumerate(specs):
            rows = labels[:, t] >= 0
            classes = np.unique(labels[rows, t])
            if len(classes) < 2:
                logger.warning("lexical heads: task %r has %d labeled class(es); it is routed by the encoder alone",
                               spec.name, len(classes))
                continue
            model = LogisticRegression(C=settings.c, max_iter=settings.max_iter,
                                       class_weight="balanced" if settings.class_weight_balanced else None)
            model.fit(features[rows], labels[rows, t])
            weights[spec.name] = _full_label_space(model, spec.num_labels)
        vocabularies = {v.analyzer: [term for term, _ in sorted(v.vocabulary_.items(), key=lambda item: item[1])]
                        for v in vectorizers}
        heads = cls(settings, vocabularies, {v.analyzer: v.idf_ for v in vectorizers}, weights)
        logger.info("lexical heads: %d terms, tasks %s", heads.n_terms, ", ".join(weights) or "none")
        return heads

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Per task with a lexical model, an (n_texts, num_labels) array of probabilities."""
        features = _features(self._vectorizers, list(texts))
        return {task: softmax(np.asarray(features @ w.T) + b) for task, (w, b) in self.weights.items()}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        tensors = {_idf_key(v.analyzer): np.asarray(v.idf_, dtype=np.float64) for v in self._vectorizers}
        for i, (w, b) in enumerate(self.weights.values()):
            tensors[f"task{i}.weight"], tensors[f"task{i}.bias"] = w, b
        save_file(tensors, str(directory / WEIGHTS_NAME))
        meta = {"settings": asdict(self.settings), "tasks": self.tasks,
                **{_vocabulary_key(analyzer): terms for analyzer, terms in self.vocabularies.items()}}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, sort_keys=True, ensure_ascii=False) + "\n",
                                             encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "LexicalHeads | None":
        """The lexical heads saved in `directory`, or None when it has none."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file():
            return None
        if not (directory / WEIGHTS_NAME).is_file():
            raise InputError(f"{directory}: {CONFIG_NAME} without {WEIGHTS_NAME}; the model directory is incomplete")
        try:
            meta = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{directory / CONFIG_NAME}: not valid JSON ({error})") from None
        tensors = load_file(str(directory / WEIGHTS_NAME))
        weights = {task: (tensors[f"task{i}.weight"], tensors[f"task{i}.bias"])
                   for i, task in enumerate(meta["tasks"])}
        settings = LexicalSettings.from_dict(meta.get("settings", {}))
        analyzers = [a for a in ("word", "char_wb") if _vocabulary_key(a) in meta]
        if "char_wb" not in analyzers:  # saved before char n-grams existed, or with them off: word n-grams only
            settings.char_ngram_max = 0
        return cls(settings, {a: meta[_vocabulary_key(a)] for a in analyzers},
                   {a: tensors[_idf_key(a)] for a in analyzers}, weights)


# Keys of each analyzer in the saved files; the word analyzer keeps the names of the first format.
def _vocabulary_key(analyzer: str) -> str:
    return "vocabulary" if analyzer == "word" else f"{analyzer}_vocabulary"


def _idf_key(analyzer: str) -> str:
    return "idf" if analyzer == "word" else f"{analyzer}_idf"


def _full_label_space(model, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense (W, b) over every label of the task, from a fitted binary or multinomial logistic regression."""
    coef = np.asarray(model.coef_, dtype=np.float32)
    intercept = np.asarray(model.intercept_, dtype=np.float32)
    classes = model.classes_.astype(int)
    if len(classes) == 2:  # binary: P(class 1) = sigmoid(z) = softmax([0, z])[1]
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros(1, dtype=np.float32), intercept])
    w = np.zeros((num_labels, coef.shape[1]), dtype=np.float32)
    b = np.full(num_labels, ABSENT_CLASS_LOGIT, dtype=np.float32)
    w[classes], b[classes] = coef, intercept
    return w, b


def check_weight(weight: float) -> float:
    """The fusion weight, refused with a one-line error outside [0, 1] (config, CLI overrides, Router)."""
    if not 0 <= weight <= 1:
        raise InputError(f"lexical_weight={weight!r} must be in [0, 1]")
    return float(weight)


def fuse(encoder_proba: np.ndarray, lexical_proba: np.ndarray | None, weight: float) -> np.ndarray:
    """(1 - weight) * encoder + weight * lexical probabilities; the encoder's alone without a lexical model."""
    if lexical_proba is None or weight <= 0:
        return encoder_proba
    return (1.0 - weight) * encoder_proba + weight * lexical_proba
