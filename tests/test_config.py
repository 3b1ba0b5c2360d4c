"""config.py: the one NAME=NUMBER parser behind --task-target, --task-weight, task_targets/task_weights and
bench's --missing."""

import pytest

from ticket_router.config import build_config, parse_number_pairs
from ticket_router.errors import InputError


@pytest.mark.parametrize("value", [["queue=0.95", "category=0.8"], "queue=0.95, category=0.8",
                                   {"queue": 0.95, "category": "0.8"}])
def test_flags_yaml_and_comma_lists_give_the_same_pairs(value):
    assert parse_number_pairs(value, "--task-target") == {"queue": 0.95, "category": 0.8}


@pytest.mark.parametrize("value, message", [
    (["queue"], "--task-target 'queue': expected NAME=NUMBER"),
    (["queue=high"], "--task-target 'queue=high': expected NAME=NUMBER"),
    (["=0.9"], "--task-target '=0.9': expected NAME=NUMBER"),
    (["queue=nan"], "--task-target 'queue=nan': expected NAME=NUMBER"),
    (["queue=0.9", "queue=0.8"], "--task-target 'queue=0.8': 'queue' is given twice"),
    ({"queue": "x"}, "--task-target 'queue: x': expected NAME=NUMBER"),
])
def test_a_bad_pair_is_refused_in_one_line_naming_it(value, message):
    with pytest.raises(InputError) as error:
        parse_number_pairs(value, "--task-target")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_train_settings_use_it_and_check_the_precision_bound(tmp_path):
    base = {"train": "t.csv", "output": "out", "tasks": ["queue=queue"]}
    config = build_config(None, {**base, "task_targets": ["queue=0.95"], "precision_bound": "point"})
    assert config.task_targets == {"queue": 0.95} and config.precision_bound == "point"
    assert build_config(None, base).precision_bound == "wilson95"
    with pytest.raises(InputError, match="task_targets 'queue=x': expected NAME=NUMBER"):
        build_config(None, {**base, "task_targets": ["queue=x"]})
    yaml = tmp_path / "c.yaml"
    yaml.write_text("train: t.csv\noutput: out\ntasks: {queue: queue}\nprecision_bound: wilson\n")
    with pytest.raises(InputError, match="precision_bound='wilson' is not one of wilson95, point"):
        build_config(str(yaml), {})
