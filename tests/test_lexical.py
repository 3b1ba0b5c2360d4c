"""Lexical heads: scikit-learn's probabilities reproduced, saved without pickle, partial labels, fusion."""

import json
import logging

import numpy as np
import pytest
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from ticket_router.errors import InputError
from ticket_router.lexical import CONFIG_NAME, WEIGHTS_NAME, LexicalHeads, LexicalSettings, fuse
from ticket_router.tasks import IGNORE_INDEX, TaskSpec

TOPICS = ["printer jam paper tray", "refund invoice charge card", "login password locked account"]


def _corpus(n=60):
    texts = [f"{TOPICS[i % 3]} ticket {i % 7} urgent" if i % 2 else f"{TOPICS[i % 3]} ticket {i % 7}" for i in range(n)]
    labels = np.array([[i % 3, i % 2] for i in range(n)])
    specs = [TaskSpec("topic", "topic", ["a", "b", "c"]), TaskSpec("urgent", "urgent", ["no", "yes"])]
    return texts, labels, specs


def _sklearn_proba(texts, y, settings, queries):
    vectorizers = [TfidfVectorizer(ngram_range=(1, settings.ngram_max), min_df=settings.min_df,
                                   sublinear_tf=settings.sublinear_tf)]
    if settings.char_ngram_max:
        vectorizers.append(TfidfVectorizer(analyzer="char_wb", min_df=settings.min_df, sublinear_tf=settings.sublinear_tf,
                                           ngram_range=(settings.char_ngram_min, settings.char_ngram_max)))
    model = LogisticRegression(C=settings.c, class_weight="balanced", max_iter=settings.max_iter)
    model.fit(scipy.sparse.hstack([v.fit_transform(texts) for v in vectorizers]), y)
    return model.predict_proba(scipy.sparse.hstack([v.transform(queries) for v in vectorizers]))


@pytest.mark.parametrize("settings", [LexicalSettings(), LexicalSettings(char_ngram_max=0)],
                         ids=["word+char", "word-only"])
def test_probabilities_match_scikit_learn_multiclass_and_binary(settings):
    texts, labels, specs = _corpus()
    heads = LexicalHeads.fit(texts, labels, specs, settings)
    assert list(heads.vocabularies) == (["word", "char_wb"] if settings.char_ngram_max else ["word"])
    queries = ["printer paper jam again", "card charge refund urgent", "nothing known here"]
    ours = heads.predict_proba(queries)
    for t, spec in enumerate(specs):
        expected = _sklearn_proba(texts, labels[:, t], heads.settings, queries)
        np.testing.assert_allclose(ours[spec.name], expected, atol=1e-5)
    assert ours["topic"][0].argmax() == 0 and ours["topic"][1].argmax() == 1


def test_char_ngrams_match_unseen_word_forms():
    # "printers" and "refunded" never occur in training: whole-word n-grams miss them, char n-grams do not.
    texts, labels, specs = _corpus()
    word_only = LexicalHeads.fit(texts, labels, specs, LexicalSettings(char_ngram_max=0))
    with_chars = LexicalHeads.fit(texts, labels, specs)
    queries = ["printers", "refunded"]
    np.testing.assert_allclose(word_only.predict_proba(queries)["topic"][0], word_only.predict_proba(["zzz"])["topic"][0])
    assert list(with_chars.predict_proba(queries)["topic"].argmax(axis=1)) == [0, 1]


def test_files_saved_before_char_ngrams_load_as_word_only(tmp_path):
    texts, labels, specs = _corpus()
    heads = LexicalHeads.fit(texts, labels, specs, LexicalSettings(char_ngram_max=0))
    heads.save(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    for key in ("char_ngram_min", "char_ngram_max"):  # the first format had no such settings
        del meta["settings"][key]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    loaded = LexicalHeads.load(tmp_path)
    assert loaded.settings.char_ngram_max == 0 and list(loaded.vocabularies) == ["word"]
    np.testing.assert_allclose(loaded.predict_proba(texts[:5])["topic"], heads.predict_proba(texts[:5])["topic"])


def test_save_load_round_trip_without_pickle(tmp_path):
    texts, labels, specs = _corpus()
    heads = LexicalHeads.fit(texts, labels, specs, LexicalSettings(weight=0.3, c=2.0))
    heads.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert meta["settings"]["weight"] == 0.3 and meta["tasks"] == ["topic", "urgent"]
    loaded = LexicalHeads.load(tmp_path)
    queries = ["login locked", "tray jam urgent"]
    for task, proba in heads.predict_proba(queries).items():
        np.testing.assert_allclose(loaded.predict_proba(queries)[task], proba, atol=1e-6)
    assert loaded.settings == heads.settings


def test_load_none_without_files_and_clear_error_when_weights_missing(tmp_path, caplog):
    assert LexicalHeads.load(tmp_path) is None
    texts, labels, specs = _corpus()
    LexicalHeads.fit(texts, labels, specs).save(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    meta["settings"]["from_the_future"] = 1
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        LexicalHeads.load(tmp_path)
    assert "from_the_future" in caplog.text
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(InputError, match="lexical.safetensors"):
        LexicalHeads.load(tmp_path)


def test_partial_labels_single_class_task_and_absent_class(caplog):
    texts, labels, specs = _corpus()
    labels = labels.copy()
    labels[::2, 0] = IGNORE_INDEX  # topic labeled on half the rows only
    labels[labels[:, 0] == 2, 0] = IGNORE_INDEX  # class "c" never labeled: it must get ~0 probability
    labels[:, 1] = np.where(np.arange(len(texts)) < 30, 1, IGNORE_INDEX)  # one class only: no lexical model
    with caplog.at_level(logging.WARNING):
        heads = LexicalHeads.fit(texts, labels, specs)
    assert heads.tasks == ["topic"] and "urgent" in caplog.text
    proba = heads.predict_proba(["login password locked account"])["topic"]
    assert proba.shape == (1, 3) and proba[0, 2] < 1e-6 and proba.sum() == pytest.approx(1.0, abs=1e-5)


def test_empty_vocabulary_is_a_clear_error():
    specs = [TaskSpec("topic", "topic", ["a", "b"])]
    with pytest.raises(InputError, match="no n-gram of the training texts is usable"):
        LexicalHeads.fit(["xyz", "qvw"], np.array([[0], [1]]), specs)  # min_df=2: no word or char n-gram survives


def test_fuse():
    encoder, lexical = np.array([[0.8, 0.2]]), np.array([[0.2, 0.8]])
    np.testing.assert_allclose(fuse(encoder, lexical, 0.25), [[0.65, 0.35]])
    assert fuse(encoder, None, 0.5) is encoder and fuse(encoder, lexical, 0.0) is encoder
