import json
import logging

import numpy as np
import pytest

from conftest import write_csv
from ticket_router.data import build_task_specs, encode_labels, join_text_columns, read_table
from ticket_router.errors import InputError
from ticket_router.tasks import IGNORE_INDEX, UNSEEN_INDEX, TaskSpec


@pytest.fixture
def table_csv(tmp_path):
    rows = [
        {"subject": "Login", "body": "N/A", "team": "NA", "prio": "1"},
        {"subject": "", "body": "card declined", "team": "billing", "prio": ""},
        {"subject": "Refund", "body": "please", "team": "", "prio": "3"},
    ]
    return write_csv(tmp_path / "t.csv", rows)


def test_csv_keeps_na_strings_and_blank_means_missing(table_csv):
    table = read_table(table_csv)
    assert table["body"][0] == "N/A" and table["team"][0] == "NA"
    specs = build_task_specs(table, {"team": "team", "prio": "prio"}, "t.csv")
    assert specs[0].labels == ["NA", "billing"]
    assert specs[1].label_type == "int"
    labels = encode_labels(table, specs, "t.csv")
    assert labels.tolist() == [[0, 0], [1, IGNORE_INDEX], [IGNORE_INDEX, 1]]


def test_jsonl_and_parquet_integer_labels_match_csv_strings(tmp_path):
    records = [{"text": "a", "y": 1}, {"text": "b", "y": None}, {"text": "c", "y": 3}]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records))
    spec = TaskSpec("y", "y", ["1", "3"], "int")
    assert encode_labels(read_table(jsonl), [spec], "t.jsonl").tolist() == [[0], [IGNORE_INDEX], [1]]
    import pandas as pd

    parquet = tmp_path / "t.parquet"
    pd.DataFrame(records).to_parquet(parquet)  # None in an int column becomes NaN / 1.0 floats
    assert encode_labels(read_table(parquet), [spec], "t.parquet").tolist() == [[0], [IGNORE_INDEX], [1]]


def test_join_text_columns_skips_blank_parts(table_csv):
    texts = join_text_columns(read_table(table_csv), ["subject", "body"], "t.csv")
    assert texts == ["Login\nN/A", "card declined", "Refund\nplease"]


def test_missing_column_error_names_file_column_and_suggestion(table_csv):
    with pytest.raises(InputError) as error:
        join_text_columns(read_table(table_csv), ["subjet"], str(table_csv))
    message = str(error.value)
    assert "t.csv" in message and "'subjet'" in message and "did you mean 'subject'" in message
    assert "\n" not in message


def test_unseen_label_warns_with_task_value_count(table_csv, caplog):
    spec = TaskSpec("team", "team", ["NA", "sales"])
    with caplog.at_level(logging.WARNING):
        labels = encode_labels(read_table(table_csv), [spec], "t.csv")
    assert labels[:, 0].tolist() == [0, UNSEEN_INDEX, IGNORE_INDEX]
    assert "'billing'" in caplog.text and "task 'team'" in caplog.text and "1 row(s)" in caplog.text


def test_unseen_label_strict_raises(table_csv):
    with pytest.raises(InputError, match="never saw"):
        encode_labels(read_table(table_csv), [TaskSpec("team", "team", ["NA", "sales"])], "t.csv", strict=True)


@pytest.mark.parametrize("name, content, message", [
    ("x.xlsx", "a", "unknown file type"), ("missing.csv", None, "no such file"), ("empty.csv", "", "empty CSV"),
    ("header.csv", "a,b\n", "no data rows"), ("dup.csv", "a,a\n1,2\n", "appears twice"),
])
def test_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_table(path)
