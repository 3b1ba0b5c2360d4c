"""The bad-input catalogue (README, "Bad input"): each row tried as a new user would, through the CLI.

Every refusal is one line `ticket-router: error: ...` naming the file and what is wrong, exit status 2, no
traceback. The model is the small one saved by an earlier version (tests/data), so no test here trains.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import pytest

from conftest import write_csv
from ticket_router.cli import main

MODEL = Path(__file__).parent / "data" / "model_v0_1"  # text columns title,description; tasks type=kind, team=team
ROWS = [{"title": "printer", "description": "paper jam in tray", "kind": "1", "team": "hw"},
        {"title": "refund", "description": "card charged twice", "kind": "2", "team": "billing"},
        {"title": "login", "description": "account locked", "kind": "3", "team": ""}]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ticket-router: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _predict(path, out, *extra) -> int:
    return main(["-q", "predict", "--model", str(MODEL), "--input", str(path), "--output", str(out), *extra])


def test_wrong_encoding_names_file_byte_and_line_and_encoding_reads_it(tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes("title,description\nok,fine\ncafé,crème brûlée\n".encode("latin-1"))
    assert _predict(path, tmp_path / "p.jsonl") == 2
    error = _error(capsys)
    assert "latin1.csv" in error and "byte 0xe9 at offset 29 (line 3)" in error and "--encoding" in error
    assert _predict(path, tmp_path / "p.jsonl", "--encoding", "latin-1") == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    assert _predict(path, tmp_path / "p.jsonl", "--encoding", "klingon") == 2
    assert "unknown encoding" in _error(capsys)


def test_wrong_encoding_on_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Drucker kaputt\nBüro\n".encode("latin-1"))))
    assert _predict("-", "-") == 2
    assert "stdin: byte 0xfc at offset 16 (line 2)" in _error(capsys)


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "empty CSV file (no header row)"),
    ("header.csv", "title,description\n", "no data rows"),
    ("empty.jsonl", "\n", "empty file (no data rows)"),
    ("dup.csv", "title,title\na,b\n", "column 'title' appears twice in the header"),
    ("ragged.csv", "title,description\nhello, world,more\n", "line 2 has 3 fields, the header has 2"),
    ("notext.csv", "subject,body\na,b\n", "no text column 'title'"),
])
def test_unreadable_tables_are_one_line(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_text(content)
    assert _predict(tmp_path / name, tmp_path / "p.jsonl") == 2
    error = _error(capsys)
    assert message in error and name in error
    assert not (tmp_path / "p.jsonl").exists()


def test_blank_tickets_are_routed_and_counted_in_one_warning(tmp_path, caplog):
    rows = [*ROWS, {"title": "", "description": " ", "kind": "", "team": ""}, {"title": "", "description": ""}]
    path = write_csv(tmp_path / "blank.csv", [dict(r, **{k: r.get(k, "") for k in ROWS[0]}) for r in rows])
    with caplog.at_level(logging.WARNING):
        assert _predict(path, tmp_path / "p.jsonl") == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 5  # every row routed
    warnings = [r.getMessage() for r in caplog.records if "blank" in r.getMessage()]
    assert warnings == ["2 of 5 ticket(s) are blank (first: ticket 4); they are routed on the heads' biases "
                        "alone, so their labels mean little"]


def test_blank_lines_of_a_text_file_are_skipped_and_counted(tmp_path, caplog):
    (tmp_path / "t.txt").write_text("printer jam\n\n   \nrefund please\n")
    with caplog.at_level(logging.WARNING):
        assert _predict(tmp_path / "t.txt", tmp_path / "p.jsonl") == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    assert "skipped 2 blank line(s) of 4" in caplog.text


def test_float_formatted_integer_labels_match_and_unseen_ones_are_errors(tmp_path, caplog, capsys):
    as_ints = write_csv(tmp_path / "ints.csv", ROWS)
    as_floats = write_csv(tmp_path / "floats.csv", [dict(r, kind=f"{r['kind']}.0") for r in ROWS])
    scores = []
    for path in (as_ints, as_floats):
        assert main(["-q", "evaluate", "--model", str(MODEL), "--data", str(path)]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0] == scores[1] and scores[0]["tasks"]["type"]["n"] == 3
    unseen = write_csv(tmp_path / "unseen.csv", [dict(r, kind="7") for r in ROWS])
    assert main(["-q", "evaluate", "--model", str(MODEL), "--data", str(unseen)]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["type"]["accuracy"] == 0.0
    assert "label '7' the model never saw (3 row(s), first row 1)" in caplog.text


def test_single_class_task_is_refused_before_training(tmp_path, capsys, distilbert_dir):
    path = write_csv(tmp_path / "one.csv", [dict(r, team="hw") for r in ROWS])
    assert main(["-q", "train", "--train", str(path), "--text-columns", "title", "--task", "team",
                 "--backbone", str(distilbert_dir), "--output", str(tmp_path / "m")]) == 2
    assert "column 'team' (task 'team') has a single label 'hw'" in _error(capsys)


def test_a_1_mb_ticket_is_routed(tmp_path):
    big = dict(ROWS[0], description="paper jam " * 100_000)  # 1 MB in one CSV cell
    path = write_csv(tmp_path / "big.csv", [big, ROWS[1]])
    assert _predict(path, tmp_path / "p.jsonl") == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2


def test_truncated_model_directory_names_the_missing_file(tmp_path, capsys):
    model = shutil.copytree(MODEL, tmp_path / "model")
    (model / "tokenizer.json").unlink()
    assert main(["predict", "--model", str(model), "--input", "-", "--output", "-"]) == 2
    assert "incomplete model directory: tokenizer.json missing" in _error(capsys)


def test_an_existing_output_file_is_replaced_whole(tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("old,content\n" * 100)
    assert _predict(write_csv(tmp_path / "in.csv", ROWS), out) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("type_label")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "p.csv"]  # no staging file left


def test_training_into_a_directory_that_is_not_a_model_is_refused_before_training(tmp_path, capsys, distilbert_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    path = write_csv(tmp_path / "t.csv", ROWS)
    assert main(["-q", "train", "--train", str(path), "--text-columns", "title", "--task", "kind",
                 "--backbone", str(distilbert_dir), "--output", str(tmp_path / "out")]) == 2
    assert "is not a ticket_router model directory (it holds notes.txt)" in _error(capsys)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
