"""--keep-checkpoints then --resume continues a run from its last checkpoint (crash recovery)."""

import json

from conftest import harbor_rows, write_csv
from ticket_router.cli import main


def _losses(model_dir):
    history = json.loads((model_dir / "log_history.json").read_text())
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_resume_continues_from_the_last_checkpoint(tmp_path, distilbert_dir):
    train = write_csv(tmp_path / "train.csv", harbor_rows("train", 48))
    argv = ["-q", "train", "--train", str(train), "--text-columns", "subject,body", "--task", "category",
            "--task", "queue", "--backbone", str(distilbert_dir), "--output", str(tmp_path / "m"),
            "--batch-size", "8", "--max-length", "24", "--keep-checkpoints", "--logging-steps", "2"]
    assert main([*argv, "--epochs", "1", "--seed", "1"]) == 0
    assert (tmp_path / "m" / "checkpoints" / "checkpoint-6").is_dir()
    first = _losses(tmp_path / "m")
    # Another seed: a fresh run would log other losses at steps 2-6; a resumed one carries the first run's.
    assert main([*argv, "--epochs", "2", "--seed", "7", "--resume"]) == 0
    resumed = _losses(tmp_path / "m")
    assert sorted(resumed) == [2, 4, 6, 8, 10, 12]
    assert all(resumed[step] == first[step] for step in (2, 4, 6))
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["global_steps"] == 12
