"""End to end through `ticket_router.cli.main`, with tiny random encoders and small CSVs."""

import csv
import io
import json

import numpy as np
import pytest

from conftest import write_csv
from ticket_router.cli import main

WORDS = {
    0: "printer jam paper tray", 1: "refund invoice charge card", 2: "login password locked account",
}


def _rows(n, offset=0):
    rows = []
    for i in range(n):
        kind = (i + offset) % 3
        rows.append({
            "ticket_id": f"T{i + offset}",
            "title": f"issue {kind}",
            "description": f"{WORDS[kind]} number {i}",
            "kind": str(kind + 1),  # integer labels
            "team": ["hw", "billing", "identity"][kind] if i % 4 else "",  # partially labeled strings
            "prio": ["low", "high"][i % 2] if i % 5 else "",
        })
    return rows


@pytest.fixture
def files(tmp_path):
    return write_csv(tmp_path / "train.csv", _rows(48)), write_csv(tmp_path / "val.csv", _rows(18, offset=100))


def _train(tmp_path, backbone, train, val, *extra):
    argv = ["-q", "train", "--train", str(train), "--validation", str(val), "--text-columns", "title,description",
            "--task", "type=kind", "--task", "id=team", "--task", "train=prio", "--backbone", str(backbone),
            "--output", str(tmp_path / "model"), "--max-steps", "10", "--batch-size", "8", "--max-length", "24",
            "--logging-steps", "5", *extra]
    assert main(argv) == 0
    return tmp_path / "model"


def test_train_evaluate_predict_with_free_task_names_int_labels_partial_labels(tmp_path, files, distilbert_dir, capsys):
    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val, "--class-weights")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "metrics.json", "training_config.json",
                 "log_history.json"):
        assert (model / name).is_file(), name
    assert not (model / "checkpoints").exists()
    saved = json.loads((model / "metrics.json").read_text())
    assert set(saved["tasks"]) == {"type", "id", "train"}
    assert saved["tasks"]["id"]["n"] == sum(1 for r in _rows(18, 100) if r["team"])
    out = capsys.readouterr().out  # after the Trainer's log lines, a short table, not the JSON of metrics.json
    table = out[out.index("Router saved to"):].splitlines()
    assert table[0].startswith(f"Router saved to {model}") and table[-1] == f"All figures: {model}/metrics.json"
    header, *heads, mean = table[2:-1]
    assert header.split() == ["head", "encoder", "n-gram", "fused", "n"]
    assert [line.split()[0] for line in heads] == ["type", "id", "train"]
    assert mean.split() == ["mean", *(f"{saved[part]['mean_macro_f1']:.3f}" for part in ("encoder_only", "lexical_only")),
                            f"{saved['mean_macro_f1']:.3f}"]
    # Issue 13: temperatures and auto/review thresholds fitted on the validation file (tests/test_policy.py).
    assert (model / "calibration.json").is_file() and (model / "policy.json").is_file()
    assert set(saved["calibration"]["type"]) >= {"temperature", "nll_optimal_temperature", "cv_ece_before",
                                                 "cv_ece_after", "cv_gain_se", "why", "ece_before", "ece_after"}
    assert set(saved["route"]) >= {"auto_share", "auto_precision", "voting_heads"}

    assert main(["evaluate", "--model", str(model), "--data", str(val), "--output", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"tasks", "mean_macro_f1", "route"} and 0 <= metrics["route"]["auto_share"] <= 1
    for task in metrics["tasks"].values():
        assert {"accuracy", "macro_f1", "n", "ece", "aurc", "coverage"} <= set(task) and 0 <= task["macro_f1"] <= 1
    assert metrics["tasks"] == json.loads(capsys.readouterr().out)["tasks"]

    out_jsonl = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(model), "--input", str(val), "--output", str(out_jsonl)]) == 0
    records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert len(records) == 18 and set(records[0]) == {"type", "id", "train", "route", "review_reasons"}  # no id column in val.csv
    assert isinstance(records[0]["type"]["label"], int)  # integer labels come back as integers
    assert set(records[0]["id"]["scores"]) == {"billing", "hw", "identity"}
    assert sum(records[0]["train"]["scores"].values()) == pytest.approx(1.0, abs=1e-4)

    out_json = tmp_path / "pred.json"
    assert main(["predict", "--model", str(model), "--input", str(val), "--output", str(out_json)]) == 0
    assert json.loads(out_json.read_text()) == records
    assert main(["predict", "--model", str(model), "--input", str(val), "--output", str(tmp_path / "p.xml")]) == 2


def test_lexical_heads_are_fitted_saved_fused_and_scored_apart(tmp_path, files, distilbert_dir):
    from ticket_router.router import Router

    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val, "--class-weights", "--lexical-weight", "0.5")
    assert (model / "lexical.json").is_file() and (model / "lexical.safetensors").is_file()
    saved = json.loads((model / "metrics.json").read_text())
    assert set(saved["encoder_only"]["tasks"]) == set(saved["lexical_only"]["tasks"]) == {"type", "id", "train"}

    router = Router.from_pretrained(model)
    texts = [f"{r['title']} {r['description']}" for r in _rows(18, offset=100)]
    fused, encoder = router.predict_proba(texts), router.encoder_proba(texts)
    lexical = router.lexical.predict_proba(texts)
    for task in ("type", "id", "train"):
        np.testing.assert_allclose(fused[task], 0.5 * encoder[task] + 0.5 * lexical[task], atol=1e-6)
    # The words decide the topic here: the n-gram heads learn it even when 10 steps leave the encoder guessing.
    assert saved["lexical_only"]["tasks"]["type"]["macro_f1"] == 1.0
    assert main(["evaluate", "--model", str(model), "--data", str(val), "--output", str(tmp_path / "m.json")]) == 0
    evaluated = json.loads((tmp_path / "m.json").read_text())["tasks"]
    for task, scores in saved["tasks"].items():  # `evaluate` routes through the same fusion as training scored
        assert {key: evaluated[task][key] for key in scores} == pytest.approx(scores)
    router.lexical_weight = 0.0
    assert router.predict_proba(texts)["type"] == pytest.approx(encoder["type"])
    # --lexical-weight overrides the trained share at evaluation time: 1 routes with the lexical heads alone.
    assert main(["evaluate", "--model", str(model), "--data", str(val), "--lexical-weight", "1",
                 "--output", str(tmp_path / "lex.json")]) == 0
    lexical_only = json.loads((tmp_path / "lex.json").read_text())["tasks"]["type"]
    assert {key: lexical_only[key] for key in saved["lexical_only"]["tasks"]["type"]} == pytest.approx(
        saved["lexical_only"]["tasks"]["type"])


def test_train_or_reuse_refits_the_lexical_heads_of_a_finished_identical_training(tmp_path, files, distilbert_dir):
    from dataclasses import replace

    from ticket_router.config import TrainConfig
    from ticket_router.training import trained_with, train_or_reuse

    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val, "--lexical-weight", "0.5")
    config = TrainConfig(**json.loads((model / "training_config.json").read_text()))
    saved = json.loads((model / "metrics.json").read_text())
    assert trained_with(config) and not trained_with(replace(config, seed=config.seed + 1))
    stamp = (model / "lexical.json").stat().st_mtime_ns
    weights = (model / "model.safetensors").stat().st_mtime_ns
    summary = train_or_reuse(config, reuse=True)
    assert summary["reused"] and (model / "model.safetensors").stat().st_mtime_ns == weights  # no fine-tune
    assert (model / "lexical.json").stat().st_mtime_ns != stamp  # refitted and saved again
    assert summary["train_runtime_s"] == saved["train_runtime_s"]
    assert summary["tasks"] == saved["tasks"]  # Router's pass scores as the Trainer's evaluation did
    for part in ("encoder_only", "lexical_only"):
        assert summary[part]["tasks"] == saved[part]["tasks"], part


def test_refit_scores_fuse_the_encoder_probabilities_as_router_does(tmp_path, files, distilbert_dir, monkeypatch):
    # A confident encoder, so that fusing anything but its probabilities (say, their softmax) changes the argmax.
    from ticket_router.config import TrainConfig
    from ticket_router.data import read_table
    from ticket_router.router import Router
    from ticket_router.training import refit_lexical_heads

    def confident(self, texts, batch_size=32, show_progress=False):
        out = {}
        for spec in self.specs:
            proba = np.full((len(texts), spec.num_labels), 0.02 / (spec.num_labels - 1), dtype=np.float32)
            proba[np.arange(len(texts)), [len(t) % spec.num_labels for t in texts]] = 0.98
            out[spec.name] = proba
        return out

    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val, "--lexical-weight", "0.3")
    monkeypatch.setattr(Router, "encoder_proba", confident)
    summary = refit_lexical_heads(TrainConfig(**json.loads((model / "training_config.json").read_text())))
    expected = Router.from_pretrained(model).evaluate(read_table(val), str(val))
    assert summary["tasks"] == {task: {key: expected["tasks"][task][key] for key in scores}
                                for task, scores in summary["tasks"].items()}


def test_lexical_weight_without_lexical_heads_is_refused(tmp_path, files, distilbert_dir, capsys):
    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val, "--lexical-weight", "0")
    assert not (model / "lexical.json").exists()
    assert "encoder_only" not in json.loads((model / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", str(val), "--lexical-weight", "0.5"]) == 2
    assert "this model has no lexical heads" in capsys.readouterr().err


def test_predict_keeps_id_column_and_writes_csv(tmp_path, files, distilbert_dir):
    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val)
    rows = [{"id": "A-1", "title": "help", "description": "printer"}, {"id": "A-2", "title": "", "description": "refund"}]
    data = write_csv(tmp_path / "new.csv", rows)
    assert main(["predict", "--model", str(model), "--input", str(data), "--output", str(tmp_path / "p.csv")]) == 0
    with (tmp_path / "p.csv").open() as handle:
        out = list(csv.DictReader(handle))
    assert [r["input_id"] for r in out] == ["A-1", "A-2"]  # a task is called "id" here
    assert {"type_label", "id_confidence", "train_scores"} <= set(out[0])


def test_predict_stdin_to_stdout(tmp_path, files, distilbert_dir, monkeypatch, capsys):
    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val)
    monkeypatch.setattr("sys.stdin", io.StringIO("my printer jams\n\nrefund my card\n"))
    capsys.readouterr()
    assert main(["-q", "predict", "--model", str(model), "--input", "-", "--output", "-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and set(json.loads(lines[0])) == {"type", "id", "train", "route", "review_reasons"}  # piped: JSON lines
    monkeypatch.setattr("sys.stdin", io.StringIO("my printer jams\nrefund my card\n"))
    assert main(["-q", "predict", "--model", str(model), "--input", "-", "--output", "-", "--format", "table"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["#1", "#2"] and lines[1].endswith("refund my card")
    assert "type=" in lines[0] and "id=" in lines[0] and lines[0].index("train=") == lines[1].index("train=")


def test_yaml_config_with_flag_override(tmp_path, files, bert_dir):
    train, val = files
    config = tmp_path / "c.yaml"
    config.write_text(
        f"train: {train}\nvalidation: {val}\ntext_columns: [title, description]\n"
        f"tasks: {{type: kind, id: team}}\nbackbone: {bert_dir}\nmax_steps: 4\nbatch_size: 4\nmax_length: 16\n"
        "loss_weighting: equal\n"
    )
    assert main(["-q", "train", "--config", str(config), "--output", str(tmp_path / "m"), "--max-steps", "6"]) == 0
    saved = json.loads((tmp_path / "m" / "training_config.json").read_text())
    assert saved["max_steps"] == 6 and saved["loss_weighting"] == "equal" and saved["tasks"] == {"type": "kind", "id": "team"}
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["global_steps"] == 6


@pytest.mark.parametrize("argv_tail, message", [
    (["--text-columns", "titel"], "no text column 'titel' (did you mean 'title'?)"),
    (["--text-columns", "title", "--task", "q=tem"], "no label column 'tem' (did you mean 'team'?)"),
    (["--text-columns", "title", "--task", "q=team", "--loss-weighting", "kendall"], "loss_weighting='kendall' is not valid"),
    (["--text-columns", "title", "--pooling", "attn"], "pooling='attn' is not one of cls, mean, attention"),
    (["--text-columns", "title", "--lexical-weight", "1.5"], "lexical_weight=1.5 must be in [0, 1]"),
])
def test_bad_input_gives_one_line_error(tmp_path, files, distilbert_dir, capsys, argv_tail, message):
    train, _ = files
    argv = ["-q", "train", "--train", str(train), "--output", str(tmp_path / "m"), "--backbone", str(distilbert_dir)]
    if "--task" not in argv_tail:
        argv_tail = [*argv_tail, "--task", "q=team"]
    assert main(argv + argv_tail) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ticket-router: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert "train.csv" in errors[0] or "kendall" in errors[0] or "attn" in errors[0] or "1.5" in errors[0]


def test_unknown_yaml_key_is_refused(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("train: x.csv\nlearning_rat: 0.1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown setting 'learning_rat' (did you mean 'learning_rate'?)" in capsys.readouterr().err


def test_evaluate_unseen_label_scored_as_error_and_strict_refuses(tmp_path, files, distilbert_dir, caplog, capsys):
    train, val = files
    model = _train(tmp_path, distilbert_dir, train, val)
    rows = _rows(6, offset=200)
    rows[0]["team"] = "legal"
    data = write_csv(tmp_path / "unseen.csv", rows)
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--output", str(tmp_path / "m.json")]) == 0
    assert "'legal' the model never saw (1 row(s), first row 1)" in caplog.text
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["tasks"]["id"]["n"] == sum(1 for r in rows if r["team"])
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--strict"]) == 2
    assert "known labels: billing, hw, identity" in capsys.readouterr().err


def test_not_a_model_dir(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "--input", "-", "--output", "-"]) == 2
    assert "not a ticket_router model directory" in capsys.readouterr().err
