import math

import pytest

from ticket_router.errors import InputError
from ticket_router.tasks import TaskSpec, canonical_label, parse_task_mapping


@pytest.mark.parametrize(
    "value, expected",
    [(None, None), ("", None), ("   ", None), (math.nan, None), (3, "3"), (3.0, "3"), ("3.0", "3"), (" P1 ", "P1"),
     ("NA", "NA"), ("N/A", "N/A"), (2.5, "2.5"), (True, "True")],
)
def test_canonical_label(value, expected):
    assert canonical_label(value) == expected


def test_integer_labels_sort_numerically_and_come_back_as_ints():
    spec = TaskSpec.from_values("prio", "p", [10, 2, None, "1", 2.0], "f.csv")
    assert spec.labels == ["1", "2", "10"] and spec.label_type == "int"
    assert spec.output_label("10") == 10


def test_string_labels_sorted():
    spec = TaskSpec.from_values("q", "queue", ["b", "a", "", "c", "a"], "f.csv")
    assert spec.labels == ["a", "b", "c"] and spec.label_type == "str"


def test_single_label_is_refused_with_column_named():
    with pytest.raises(InputError, match=r"f.csv: column 'queue' \(task 'q'\) has a single label 'a'"):
        TaskSpec.from_values("q", "queue", ["a", "a", None], "f.csv")


def test_unlabeled_column_is_refused():
    with pytest.raises(InputError, match="has no labeled row"):
        TaskSpec.from_values("q", "queue", [None, ""], "f.csv")


def test_task_names_are_free_text():
    mapping = parse_task_mapping(["type=category", "id=ticket_id", "train=queue", "urgency"])
    assert mapping == {"type": "category", "id": "ticket_id", "train": "queue", "urgency": "urgency"}


@pytest.mark.parametrize("items, message", [(["=x"], "expected NAME=COLUMN"), (["a=x", "a=y"], "given twice"), ([], "no task")])
def test_bad_task_mapping(items, message):
    with pytest.raises(InputError, match=message):
        parse_task_mapping(items)


def test_task_spec_from_dict_ignores_unknown_keys(caplog):
    spec = TaskSpec.from_dict({"name": "a", "column": "b", "labels": ["x", "y"], "future_key": 1})
    assert spec.labels == ["x", "y"]
    assert "future_key" in caplog.text
