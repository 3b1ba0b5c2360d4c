"""`ticket-router pretrain`: continued MLM pretraining on tiny random encoders, its record, and its refusals."""

import json

import pytest
import torch

from conftest import harbor_rows, write_csv
from ticket_router.cli import main
from ticket_router.pretrain import RECORD_NAME, PretrainConfig, file_sha256, pretrain

STEPS = ["--max-steps", "3", "--batch-size", "4", "--max-length", "32", "--logging-steps", "1"]


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("tickets") / "tickets.csv", harbor_rows("train", 40))


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_pretrain_records_perplexity_and_saves_a_backbone_a_router_trains_on(tmp_path, tickets, bert_dir, capsys):
    output = tmp_path / "mlm"
    assert main(["pretrain", "--texts", str(tickets), "--text-column", "subject,body", "--backbone", str(bert_dir),
                 "--output", str(output), "--eval-fraction", "0.25", "--learning-rate", "1e-2", *STEPS]) == 0
    record = json.loads((output / RECORD_NAME).read_text())
    out = capsys.readouterr().out  # after the Trainer's own log lines (one dict a line)
    assert record == json.loads(out[out.index("{\n"):])
    assert (record["texts"], record["train_texts"], record["eval_texts"], record["global_steps"]) == (40, 30, 10, 3)
    assert record["texts_sha256"] == file_sha256(tickets) and record["text_columns"] == ["subject", "body"]
    assert record["mlm_head_initialised_fresh"] is True  # conftest saves a bare BertModel
    assert record["eval_perplexity_after"] < record["eval_perplexity_before"]  # lr 1e-2 on a random model
    before, after = _weights(bert_dir), _weights(output)
    assert set(after) == set(before)  # the encoder alone, pooler included: no MLM head, nothing missing
    assert not torch.equal(after["embeddings.word_embeddings.weight"], before["embeddings.word_embeddings.weight"])
    assert torch.equal(after["pooler.dense.weight"], before["pooler.dense.weight"])  # untouched by MLM

    from ticket_router.backbone import load_backbone

    encoder, tokenizer = load_backbone(str(output))
    assert encoder.config.model_type == "bert" and tokenizer("printer jam")["input_ids"]
    router = tmp_path / "router"
    assert main(["-q", "train", "--train", str(tickets), "--text-columns", "subject,body", "--task", "urgency=urgency",
                 "--backbone", str(output), "--output", str(router), "--max-steps", "2", "--batch-size", "4",
                 "--max-length", "32", "--lexical-weight", "0"]) == 0
    assert (router / "model.safetensors").is_file()


def test_distilbert_on_a_txt_file_one_ticket_per_line(tmp_path, distilbert_dir, caplog):
    texts = tmp_path / "unlabeled.txt"
    texts.write_text("printer jams on tray two\n\nrefund the double charge\nlocked out of my account\n" * 3)
    record = pretrain(PretrainConfig(output=str(tmp_path / "mlm"), texts=str(texts), backbone=str(distilbert_dir),
                                     max_steps=2, batch_size=4, max_length=16, eval_fraction=0.0))
    assert (record.texts, record.blank, record.text_columns, record.global_steps) == (9, 3, None, 2)
    assert record.eval_perplexity_before is None and record.eval_perplexity_after is None
    assert "left out 3 blank row(s) of 12" in caplog.text and "initialised fresh" in caplog.text
    assert set(_weights(tmp_path / "mlm")) == set(_weights(distilbert_dir))
    from transformers import AutoModel

    assert AutoModel.from_pretrained(tmp_path / "mlm").config.model_type == "distilbert"


def test_an_earlier_pretrain_is_replaced_other_directories_are_refused(tmp_path, distilbert_dir, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("printer jams\nrefund please\n")
    output = tmp_path / "mlm"
    argv = ["pretrain", "--texts", str(texts), "--backbone", str(distilbert_dir), "--output", str(output),
            "--eval-fraction", "0", *STEPS]
    assert main(argv) == 0
    (output / "stale.txt").write_text("from the first run")
    assert main(argv) == 0
    assert not (output / "stale.txt").exists() and (output / RECORD_NAME).is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.md").write_text("mine")
    capsys.readouterr()
    assert main([*argv[:5], "--output", str(other), *argv[7:]]) == 2
    err = capsys.readouterr().err
    assert "is not a pretrained backbone (no pretrain.json) (it holds keep.md" in err and len(err.strip().splitlines()) == 1
    assert (other / "keep.md").read_text() == "mine"


@pytest.mark.parametrize("content, extra, message", [
    ("id,subject,body\n1,printer,jam\n", ["--text-column", "subjct"],
     "no text column 'subjct' (did you mean 'subject'?); columns are 'id', 'subject', 'body'"),
    ("", [], "empty CSV file"),
    ("id,text\n", [], "no data rows"),
    ("id,text\n1,\n2,  \n", [], "no text to pretrain on: all 2 row(s) are blank in text"),
    ("", ["--txt"], "empty file (no lines)"),
    ("\n  \n\n", ["--txt"], "no text to pretrain on: all 3 row(s) are blank"),
    ("id,text\n1,a\n", ["--eval-fraction", "1.5"], "--eval-fraction 1.5: must be in [0, 1)"),
])
def test_bad_input_is_one_line(tmp_path, distilbert_dir, capsys, content, extra, message):
    path = tmp_path / ("t.txt" if "--txt" in extra else "t.csv")
    path.write_text(content)
    extra = [e for e in extra if e != "--txt"]
    assert main(["pretrain", "--texts", str(path), "--backbone", str(distilbert_dir),
                 "--output", str(tmp_path / "out"), *extra]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the datasets progress bars, if any
    assert last.startswith("ticket-router: error: ") and message in last, last
    assert not (tmp_path / "out").exists()


def test_config_gives_the_training_file_columns_and_max_length(tmp_path, tickets):
    from ticket_router.cli import build_parser
    from ticket_router.pretrain import config_from_args

    config = tmp_path / "c.yaml"
    config.write_text(f"train: {tickets}\ntext_columns: [subject, body]\nmax_length: 48\ntasks: {{u: urgency}}\n")
    args = build_parser().parse_args(["pretrain", "--config", str(config), "--output", "o", "--epochs", "2"])
    settings = config_from_args(args)
    assert (settings.texts, settings.text_columns, settings.max_length, settings.epochs) == (
        str(tickets), ["subject", "body"], 48, 2.0)
    args = build_parser().parse_args(["pretrain", "--config", str(config), "--output", "o", "--max-length", "20"])
    assert config_from_args(args).max_length == 20  # flags win
