"""Tests for the embedded Harbor dataset generator (data/generate_harbor.py).

They regenerate the dataset into a temp folder (well under a second) and check
determinism, that the committed files are exactly what the generator makes,
and the properties the rest of ticket_router relies on: label sets, partial-
label coverage, and that queue is not just a function of category.
"""

from __future__ import annotations

import collections
import csv
import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "generate_harbor.py"
COMMITTED = REPO / "data" / "harbor"
FILES = ("train.csv", "validation.csv", "test.csv", "samples.txt")
SPLITS = ("train", "validation", "test")
COLUMNS = ["id", "subject", "body", "category", "urgency", "queue"]


def load_generator():
    # data/ is not a package, so import the script by path.
    # Don't leave a data/__pycache__ behind next to the committed dataset.
    spec = importlib.util.spec_from_file_location("generate_harbor", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


@pytest.fixture(scope="module")
def gen():
    return load_generator()


@pytest.fixture(scope="module")
def out_dir(gen, tmp_path_factory):
    path = tmp_path_factory.mktemp("harbor")
    assert gen.main(["--out-dir", str(path)]) == 0
    return path


def read_rows(directory: Path, split: str) -> list:
    with (directory / f"{split}.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def rows(out_dir):
    return {split: read_rows(out_dir, split) for split in SPLITS}


def test_deterministic_and_matches_committed_files(gen, out_dir, tmp_path):
    again = tmp_path / "again"
    gen.main(["--out-dir", str(again)])
    for name in FILES:
        produced = (out_dir / name).read_bytes()
        assert (again / name).read_bytes() == produced, f"{name} differs between runs"
        assert (COMMITTED / name).read_bytes() == produced, (
            f"data/harbor/{name} is stale: rerun `python data/generate_harbor.py`"
        )


def test_other_seed_changes_output(gen, out_dir, tmp_path):
    gen.main(["--out-dir", str(tmp_path), "--seed", "7"])
    assert (tmp_path / "train.csv").read_bytes() != (out_dir / "train.csv").read_bytes()


def test_split_sizes_and_total_size(out_dir, rows):
    assert [len(rows[s]) for s in SPLITS] == [3000, 500, 500]
    total = sum((out_dir / name).stat().st_size for name in FILES)
    assert total < 3 * 1024 * 1024


def test_label_sets(rows):
    for task, expected in (("category", 12), ("urgency", 4), ("queue", 8)):
        values = sorted({r[task] for split in SPLITS for r in rows[split] if r[task]})
        assert len(values) == expected, (task, values)
        assert all(re.fullmatch(r"[a-z0-9_]+|P[0-3]", v) for v in values), values
    assert sorted({r["urgency"] for r in rows["train"] if r["urgency"]}) == ["P0", "P1", "P2", "P3"]


@pytest.mark.parametrize("task,target", [("category", 0.995), ("urgency", 0.80), ("queue", 0.63)])
def test_label_coverage(rows, task, target):
    train = rows["train"]
    coverage = sum(bool(r[task]) for r in train) / len(train)
    assert abs(coverage - target) <= 0.04, (task, coverage)


def test_queue_is_not_a_function_of_category(rows):
    by_category = collections.defaultdict(collections.Counter)
    for r in rows["train"]:
        if r["category"] and r["queue"]:
            by_category[r["category"]][r["queue"]] += 1
    multi_queue = [c for c, queues in by_category.items() if len(queues) >= 2]
    assert len(multi_queue) >= 8, dict(by_category)
    labeled = sum(sum(q.values()) for q in by_category.values())
    majority = sum(q.most_common(1)[0][1] for q in by_category.values())
    assert majority / labeled < 0.90


def test_ids_unique_and_well_formed(rows):
    ids = [r["id"] for split in SPLITS for r in rows[split]]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"HB-\d{6}", i) for i in ids)


def test_every_row_has_a_body(rows):
    assert all(r["body"].strip() for split in SPLITS for r in rows[split])


def test_no_queue_name_leaks_into_text(gen, rows):
    # The queue must be inferred from the situation, never read off the text.
    names = [q.replace("_", " ") for q in gen.QUEUES] + list(gen.QUEUES) + ["logistics", "engineering"]
    pattern = re.compile("|".join(re.escape(n) for n in names), re.IGNORECASE)
    leaks = [r["id"] for split in SPLITS for r in rows[split] if pattern.search(r["subject"] + " " + r["body"])]
    assert not leaks


def test_samples_are_eight_single_line_tickets(out_dir):
    text = (out_dir / "samples.txt").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 9
    assert all(" — " in line and len(line) > 40 for line in lines[:-1])
