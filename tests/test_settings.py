"""One settings source: each multi-task knob is declared once and reaches YAML, flags and the Trainer's arguments."""

from dataclasses import fields

import pytest

from ticket_router.cli import _REPEATABLE, build_parser
from ticket_router.config import TRAINER_KEYS, TrainConfig, build_config
from ticket_router.errors import InputError
from ticket_router.settings import KNOBS, LossWeighting, MultiTaskKnobs, Precision
from ticket_router.training import training_arguments

CHANGED = {"loss_weighting": "fixed", "task_weights": {"a": 2.0}, "uncertainty_warmup_steps": 3,
           "sampling": "random", "sampling_temperature": 2.0, "class_weights": True, "group_by_length": True,
           "freeze_encoder_steps": 4, "head_learning_rate": 1e-3, "precision": "fp32", "gradient_surgery": "pcgrad",
           "gradient_conflict_steps": 7, "uncertainty_weight_floor": 0.2, "dwa_temperature": 3.0,
           "dwa_window_steps": 5, "gradnorm_alpha": 2.5, "balancer_learning_rate": 0.05}


def test_every_knob_is_a_flag_a_yaml_key_and_a_trainer_argument(tmp_path):
    assert set(CHANGED) == set(KNOBS)  # a new knob: give it a changed value here
    yaml = tmp_path / "c.yaml"
    yaml.write_text("".join(f"{k}: {v}\n" for k, v in CHANGED.items() if k != "task_weights"))
    config = build_config(str(yaml), {"train": "t.csv", "output": str(tmp_path / "m"), "tasks": ["a"],
                                      "task_weights": ["a=2"], "epochs": 2.0, "batch_size": 4})
    args = training_arguments(config, has_eval=False)
    for knob, value in CHANGED.items():
        assert getattr(args, knob) == value, knob  # str enums compare equal to their values
    assert args.num_train_epochs == 2.0 and args.per_device_train_batch_size == 4
    for name, key in TRAINER_KEYS.items():
        assert getattr(args, key) == getattr(config, name), name
    flags = build_parser()._subparsers._group_actions[0].choices["train"]._option_string_actions
    for f in fields(TrainConfig):
        flag = _REPEATABLE[f.name][0] if f.name in _REPEATABLE else f"--{f.name.replace('_', '-')}"
        assert flag in flags, f.name
        assert f.metadata.get("help"), f"{f.name} has no help text"


def test_flag_types_come_from_the_field_types():
    args = build_parser().parse_args(["train", "--sampling-temperature", "2", "--max-steps", "5", "--class-weights",
                                      "--eval-steps", "7", "--loss-weighting", "equal"])
    assert args.sampling_temperature == 2.0 and args.max_steps == 5 and args.eval_steps == 7
    assert args.class_weights is True and args.loss_weighting == "equal"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--max-steps", "five"])


@pytest.mark.parametrize("key, value, message", [
    ("loss_weighting", "kendall", "loss_weighting='kendall' is not valid; choose one of 'equal', 'fixed'"),
    ("precision", "fp8", "precision='fp8' is not valid"),
    ("sampling_temperature", 0, "sampling_temperature=0 must be > 0"),
    ("freeze_encoder_steps", -1, "freeze_encoder_steps=-1 must be >= 0"),
    ("head_learning_rate", -0.1, "head_learning_rate=-0.1 must be > 0"),
    ("task_weights", {"a": -1.0}, "task_weights['a']=-1.0 must be >= 0"),
])
def test_knobs_are_checked_in_one_place_naming_key_and_value(key, value, message):
    knobs = MultiTaskKnobs(**{key: value})
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        knobs.check_knobs()


def test_checked_knobs_are_enums():
    knobs = MultiTaskKnobs(loss_weighting="equal", precision="bf16")
    knobs.check_knobs()
    assert knobs.loss_weighting is LossWeighting.EQUAL and knobs.precision is Precision.BF16
