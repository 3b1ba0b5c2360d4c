"""`Router` is the one persisted object: save/load round trip, the previous layout, atomic saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from ticket_router.errors import InputError
from ticket_router.lexical import LexicalHeads
from ticket_router.router import Router, RouterSettings
from ticket_router.tasks import TaskSpec

OLD_LAYOUT = Path(__file__).parent / "data" / "model_v0_1"  # saved by ticket_router before router.json existed
TEXTS = ["printer jam paper tray", "refund invoice charge card", "login password locked account"] * 4


@pytest.fixture(scope="module")
def router(distilbert_dir) -> Router:
    from transformers import AutoModel, AutoTokenizer

    from ticket_router.modeling import MultiTaskRouterModel

    specs = [TaskSpec("topic", "topic", ["hw", "billing", "identity"]), TaskSpec("prio", "prio", ["1", "2"], "int")]
    model = MultiTaskRouterModel.from_backbone(AutoModel.from_pretrained(distilbert_dir), specs, ["text"],
                                               max_length=16)
    labels = np.array([[i % 3, i % 2] for i in range(len(TEXTS))])
    lexical = LexicalHeads.fit(TEXTS, labels, specs)
    return Router(model, AutoTokenizer.from_pretrained(distilbert_dir), "cpu", RouterSettings(0.3), lexical=lexical)


def test_round_trip_keeps_encoder_lexical_heads_and_fusion_weight(router, tmp_path):
    saved = router.save_pretrained(tmp_path / "m", extra_files={"metrics.json": "{}\n"})
    assert json.loads((saved / "router.json").read_text()) == {"lexical_weight": 0.3}
    assert (saved / "metrics.json").read_text() == "{}\n"
    assert not (saved / "training_args.bin").exists()  # nothing pickled in a model directory
    loaded = Router.from_pretrained(saved, device="cpu")
    assert loaded.lexical_weight == 0.3 and loaded.lexical is not None
    expected, got = router.predict_proba(TEXTS), loaded.predict_proba(TEXTS)
    for task in router.task_names:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)
    assert loaded.route(TEXTS[:1]) == router.route(TEXTS[:1])


def test_predict_proba_is_the_fusion_of_the_parts(router):
    encoder, lexical = router.encoder_proba(TEXTS), router.lexical.predict_proba(TEXTS)
    fused = router.predict_proba(TEXTS)
    np.testing.assert_allclose(fused["topic"], 0.7 * encoder["topic"] + 0.3 * lexical["topic"], atol=1e-6)
    assert router.predict_proba(TEXTS, encoder_proba=encoder)["prio"] == pytest.approx(fused["prio"])


def test_the_encoder_model_alone_is_not_the_router(router, tmp_path):
    """Why Router is the entry point: MultiTaskRouterModel.from_pretrained has no lexical heads."""
    import torch

    from ticket_router.modeling import MultiTaskRouterModel

    saved = router.save_pretrained(tmp_path / "m")
    model = MultiTaskRouterModel.from_pretrained(saved).eval()
    with torch.inference_mode():
        encoded = router.tokenizer(TEXTS[:3], padding=True, truncation=True, max_length=router.max_length,
                                   return_tensors="pt")  # as the Router reads them: the tiny vocabulary makes long inputs
        logits = model(**encoded).logits
    encoder_only = torch.softmax(logits[0], -1).numpy()
    assert np.allclose(encoder_only, router.encoder_proba(TEXTS[:3])["topic"], atol=1e-5)
    assert not np.allclose(encoder_only, router.predict_proba(TEXTS[:3])["topic"], atol=1e-3)


def test_a_directory_saved_in_the_previous_layout_loads_and_routes_as_before():
    expected = json.loads((OLD_LAYOUT.parent / "model_v0_1_routes.json").read_text())
    assert not (OLD_LAYOUT / "router.json").exists()  # the weight sits in lexical.json's settings
    router = Router.from_pretrained(OLD_LAYOUT, device="cpu")
    assert router.lexical_weight == 0.4
    for got, want in zip(router.route(expected["texts"]), expected["routes"]):
        for task, decision in want.items():
            assert got[task]["label"] == decision["label"]
            assert got[task]["scores"] == pytest.approx(decision["scores"], abs=1e-5)


def test_a_save_replaces_a_model_directory_but_never_other_files(router, tmp_path):
    target = tmp_path / "m"
    router.save_pretrained(target)
    (target / "checkpoints").mkdir()
    router.save_pretrained(target, keep=["checkpoints"])  # training with --keep-checkpoints
    assert (target / "checkpoints").is_dir()
    router.save_pretrained(target)
    assert not (target / "checkpoints").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left behind
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not a ticket_router model directory"):
        router.save_pretrained(home)
    assert (home / "notes.txt").read_text() == "mine"


_KILLED_SAVE = """
import sys, time
from ticket_router.lexical import LexicalHeads
from ticket_router.router import Router
router = Router.from_pretrained(sys.argv[1], device="cpu")
router.lexical_weight = 0.9
save = LexicalHeads.save
def slow_save(self, directory):
    save(self, directory)
    print("writing", flush=True)
    time.sleep(60)
LexicalHeads.save = slow_save
router.save_pretrained(sys.argv[1])
"""


def test_a_killed_save_leaves_the_previous_model_whole(router, tmp_path):
    target = router.save_pretrained(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(target)], stdout=subprocess.PIPE,
                               env=env, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"  # mid-save: weights and lexical heads written
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert Router.from_pretrained(target, device="cpu").lexical_weight == 0.3
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".m.saving-")]
    assert leftovers  # the killed save's staging folder, removed by the next save
    router.save_pretrained(target)
    assert not any(p.exists() for p in leftovers)


@pytest.mark.parametrize("missing, named", [
    ("model.safetensors", "model.safetensors missing"),
    ("tokenizer_config.json", "tokenizer_config.json missing"),
    ("lexical.safetensors", "lexical.safetensors missing"),
    ("lexical.json", "lexical.json missing"),
])
def test_a_truncated_model_directory_is_refused_naming_the_file(router, tmp_path, missing, named):
    target = router.save_pretrained(tmp_path / "m")
    (target / missing).unlink()
    with pytest.raises(InputError, match=named) as error:
        Router.from_pretrained(target)
    assert "\n" not in str(error.value)


def test_a_damaged_weights_file_is_one_line(router, tmp_path):
    target = router.save_pretrained(tmp_path / "m")
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match="damaged model directory") as error:
        Router.from_pretrained(target)
    assert "\n" not in str(error.value)



def test_length_sorted_batches_come_back_in_input_order(router):
    texts = ["a", "printer jam paper tray that will not feed at all", "refund", "login password locked account now"]
    batched = router.predict_proba(texts, batch_size=2)  # batches of the longest two, then the shortest two
    for i, text in enumerate(texts):
        alone = router.predict_proba([text], batch_size=1)
        for task, p in batched.items():
            np.testing.assert_allclose(p[i], alone[task][0], atol=1e-5)
    assert not np.allclose(batched["topic"][0], batched["topic"][1])  # different tickets: the check can fail
