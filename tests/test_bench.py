"""`python -m bench` end to end on a tiny synthetic ticket set with a tiny random DistilBERT (about a minute on 2 cores)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types

import pytest

from bench import cli, memory, report
from bench.settings import PROFILES
from conftest import REPO, harbor_rows, write_csv

SECTIONS = ("reference", "router", "single", "shadow", "ablations", "speed", "gpu", "mtl")
MTL_METHODS = ("uncertainty", "equal")


def _load_bench():
    """The bench's entry points, under the names these tests used when the bench was one script."""
    return types.SimpleNamespace(main=cli.main, MARK_BEGIN=report.MARK_BEGIN, render_markdown=report.render_markdown,
                                 peak_memory=memory.peak_memory)


def _ticket_rows(split: str, n: int) -> list[dict]:
    """Harbor tickets renamed to the support-ticket columns (type, priority), plus a language column."""
    return [{"subject": r["subject"], "body": r["body"], "type": r["category"], "queue": r["queue"],
             "priority": r["urgency"], "language": "en"} for r in harbor_rows(split, n)]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, distilbert_dir):
    tmp = tmp_path_factory.mktemp("bench")
    data = tmp / "tickets"
    data.mkdir()
    write_csv(data / "train.csv", _ticket_rows("train", 60))
    write_csv(data / "validation.csv", _ticket_rows("validation", 30))
    write_csv(data / "test.csv", _ticket_rows("test", 40))
    config = tmp / "config.yaml"
    config.write_text(
        "text_columns: [subject, body]\n"
        "tasks: {category: type, urgency: priority, queue: queue}\n"
        "batch_size: 8\neval_batch_size: 16\nmax_length: 32\nlearning_rate: 1.0e-3\n"
        "loss_weighting: uncertainty\nsampling: proportional\nclass_weights: true\npooling: cls\n"
        "lexical_weight: 0.5\n"
    )
    mtl_config = tmp / "mtl.yaml"  # the mtl section's own config: the conflict log at every step
    mtl_config.write_text(config.read_text() + "gradient_conflict_steps: 1\n")
    (tmp / "BENCHMARKS.md").write_text("# Benchmarks\n\nHand-written intro.\n\n<!-- bench:begin -->\nold\n"
                                       "<!-- bench:end -->\n\nHand-written footer.\n")
    bench = _load_bench()
    common = ["--data-dir", str(data), "--config", str(config), "--backbone", str(distilbert_dir),
              "--out", str(tmp / "out"), "--results", str(tmp / "results.json"),
              "--benchmarks-md", str(tmp / "BENCHMARKS.md"), "--max-steps", "2", "--speed-steps", "8",
              "--seeds", "2", "--bootstrap", "50", "--full",  # single-task models: the first seed only (the default)
              "--mtl-config", str(mtl_config), "--mtl-train", str(data / "train.csv"),
              "--mtl-validation", str(data / "validation.csv"), "--mtl-test", str(data / "test.csv"),
              "--mtl-methods", ",".join(MTL_METHODS)]
    assert bench.main(common) == 0
    return bench, tmp, common


def test_results_hold_every_section_and_the_run(bench_run):
    _, tmp, _ = bench_run
    results = json.loads((tmp / "results.json").read_text())
    assert set(results["sections"]) == set(SECTIONS) and not results["errors"]
    assert set(results["section_wall_s"]) == set(SECTIONS)
    for key in ("command", "machine", "started", "finished", "wall_s", "settings"):
        assert results[key], key
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["torch"]
    s = results["sections"]
    for task in ("category", "urgency", "queue"):
        assert 0 <= s["reference"]["tasks"][task]["tfidf"]["macro_f1"] <= 1
        assert s["router"]["summary"]["tasks"][task]["macro_f1"]["mean"] is not None
        assert s["single"]["runs"][0]["tasks"][task]["n"] > 0
        assert s["shadow"]["summary"][task]["n_seeds"] == 1
        versus = [seed["tasks"][task] for seed in s["shadow"]["versus_tfidf"]["per_seed"]]  # every router seed
        assert len(versus) == 2 and all(v["ci95"][0] <= v["ci95"][1] for v in versus)
        assert all(v["verdict"] in ("better", "worse", "same within noise") for v in versus)
    assert [run["seed"] for run in s["router"]["runs"]] == [42, 43] and [run["seed"] for run in s["single"]["runs"]] == [42]
    assert s["router"]["runs"][0]["global_steps"] == 2
    for part in ("encoder_only", "lexical_only"):  # lexical heads fused: each part is scored alone too
        assert set(s["router"]["summary"][part]["tasks"]) == {"category", "urgency", "queue"}
        assert set(s["single"]["runs"][0][part]["tasks"]) == {"category", "urgency", "queue"}
    assert s["speed"]["training"]["router_tickets_per_s"] > 0 and s["speed"]["inference"]["ratio"] > 0
    assert 0 < s["speed"]["inference"]["lexical_share_of_router"] < 1
    assert len(s["speed"]["memory"]["setups"]) == 3
    assert s["gpu"]["available"] or s["gpu"]["note"] == "no GPU on this machine"


def test_ablations_change_one_key_and_reuse_identical_trainings(bench_run):
    _, tmp, _ = bench_run
    ablations = json.loads((tmp / "results.json").read_text())["sections"]["ablations"]
    rows = {(r["group"], r["variant"]): r for r in ablations["rows"]}
    assert rows[("recommended", "recommended config")]["source"].startswith("router run")
    # fixed weighting with every weight 1.0 is the equal objective: trained once
    assert rows[("loss weighting", "fixed (weights 1.0)")]["source"] == "loss weighting / equal ablation"
    assert rows[("pooling", "mean")]["source"] == "trained" and rows[("pooling", "cls")]["is_recommended"]
    assert rows[("pooling", "attention")]["source"] == "trained"
    blanked = ablations["missing_labels"]["blanked"]
    assert blanked["queue"]["blanked"] == round(0.4 * blanked["queue"]["labeled"])


def test_markdown_tables_replace_only_the_marked_block(bench_run):
    _, tmp, _ = bench_run
    text = (tmp / "BENCHMARKS.md").read_text()
    assert text.startswith("# Benchmarks\n\nHand-written intro.") and text.rstrip().endswith("Hand-written footer.")
    block = text.split("<!-- bench:begin -->")[1].split("<!-- bench:end -->")[0]
    assert "old" not in block.splitlines()
    for heading in ("Quality on the validation set", "Does the router clear the bar?", "Ablations", "Speed", "Memory",
                    "GPU"):
        assert f"### {heading}" in block, heading
    assert "| Router (multi-task) (2 seed(s)) |" in block and "| Single-task fine-tunes (1 seed(s)) |" in block and "| TF-IDF + LogReg |" in block
    assert "| ↳ Router (multi-task): encoder heads alone |" in block
    assert "| ↳ Single-task fine-tunes: lexical heads alone |" in block
    assert "| lexical heads' part of one router pass (ms/ticket) |" in block
    assert "| vs TF-IDF per seed |" in block and "42: " in block.split("### Does the router clear the bar?")[1]
    assert "`python -m bench --data-dir" in block  # each table names the command that measured it


def test_only_reruns_one_section_and_keeps_the_others(bench_run):
    bench, tmp, common = bench_run
    before = json.loads((tmp / "results.json").read_text())
    assert bench.main([*common, "--only", "reference"]) == 0
    after = json.loads((tmp / "results.json").read_text())
    assert set(after["sections"]) == set(SECTIONS)
    assert after["sections"]["router"] == before["sections"]["router"]
    assert after["sections"]["reference"]["run"]["command"].endswith("--only reference")
    header = (tmp / "BENCHMARKS.md").read_text().split(bench.MARK_BEGIN)[1].splitlines()[1]
    assert "--only reference` (full (`--full`) settings)" in header, header


def test_unknown_section_is_refused(bench_run, capsys):
    bench, _, common = bench_run
    assert bench.main([*common, "--only", "routr"]) == 2
    assert "unknown section" in capsys.readouterr().err


def test_more_single_task_seeds_than_seeds_is_refused(bench_run, capsys):
    bench, _, common = bench_run
    assert bench.main([*common, "--single-seeds", "3"]) == 2
    assert "--single-seeds=3 must be between 1 and --seeds (2)" in capsys.readouterr().err


def test_a_failing_section_is_recorded_not_swallowed(bench_run, tmp_path):
    bench, _, common = bench_run
    fresh = [*common, "--out", str(tmp_path / "empty"), "--results", str(tmp_path / "r.json"),
             "--benchmarks-md", str(tmp_path / "B.md"), "--only", "shadow"]  # later flags win in argparse
    assert bench.main(fresh) == 1
    results = json.loads((tmp_path / "r.json").read_text())
    assert "shadow" not in results["sections"] and "no trained model" in results["errors"]["shadow"]["error"]
    assert "⚠ section `shadow` failed" in (tmp_path / "B.md").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's; elsewhere the probe uses ru_maxrss")
def test_memory_probe_reports_its_own_peak_not_the_parents(tmp_path):
    # ru_maxrss survives fork + exec on Linux: a probe started by a parent holding 1 GiB used to report that GiB.
    bench = _load_bench()
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(["printer offline"]), encoding="utf-8")
    ballast = bytearray(1024**3)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    peak = bench.peak_memory([], texts)["peak_rss_bytes"]
    assert peak < 1024**3, f"probe peak {peak} B includes the parent's 1 GiB"
    del ballast


def test_sections_older_than_the_router_section_are_flagged(bench_run):
    bench, tmp, _ = bench_run
    results = json.loads((tmp / "results.json").read_text())
    assert "predates the router section" not in bench.render_markdown(results)
    results["sections"]["shadow"]["run"]["started"] = "2000-01-01T00:00:00+00:00"  # kept from an earlier run
    text = bench.render_markdown(results)
    assert "⚠ section `shadow` (2000-01-01T00:00) predates the router section" in text
    assert "section `reference`" not in text  # the reference does not depend on the router's models


def test_reuse_keeps_finished_trainings_and_refits_only_the_lexical_heads(bench_run):
    bench, tmp, common = bench_run
    before = json.loads((tmp / "results.json").read_text())["sections"]
    weights = tmp / "out" / "router" / "seed42" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert bench.main([*common, "--only", "router,single", "--reuse"]) == 0
    after = json.loads((tmp / "results.json").read_text())["sections"]
    assert weights.stat().st_mtime_ns == stamp  # not fine-tuned again
    for name in ("router", "single"):
        assert all(run["reused"] for run in after[name]["runs"]), name
        for run_before, run_after in zip(before[name]["runs"], after[name]["runs"]):
            assert run_after["lexical_only"] == run_before["lexical_only"]  # same settings: the same refit
            # The encoder scores again in Router's batches, not the Trainer's: padding differs, so a near-tie of
            # the random tiny model may flip a ticket or two, no more.
            for task, scores in run_before["encoder_only"]["tasks"].items():
                assert abs(run_after["encoder_only"]["tasks"][task]["accuracy"] - scores["accuracy"]) <= 2 / scores["n"]
            assert run_after["train_runtime_s"] == run_before["train_runtime_s"]
    assert "(2/2 seed(s) reused from an earlier run)" in (tmp / "BENCHMARKS.md").read_text()


def test_lexical_cv_scores_each_variant_on_the_training_rows_alone(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("lexical_cv", REPO / "bench" / "lexical_cv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_csv(tmp_path / "train.csv", _ticket_rows("train", 80))
    (tmp_path / "config.yaml").write_text(
        f"train: {tmp_path / 'train.csv'}\nvalidation: {tmp_path / 'missing.csv'}\ntext_columns: [subject, body]\n"
        "tasks: {category: type, urgency: priority}\nclass_weights: true\n")
    assert module.main(["--config", str(tmp_path / "config.yaml"), "--folds", "2"]) == 0  # never reads validation
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| word")]
    assert len(table) == len(module.VARIANTS)
    assert all(0 <= float(cell) <= 1 for line in table for cell in line.strip("| ").split(" | ")[1:])


def test_gpu_rows_render_every_precision_and_batch(bench_run):
    # CI has no GPU, so the section measures nothing there: render a recorded one to keep its table honest.
    bench, tmp, _ = bench_run
    results = json.loads((tmp / "results.json").read_text())
    run = results["sections"]["router"]["run"]
    training = [{"batch_size": b, "steps": 150,
                 "tickets_per_s": {"bf16": 2.0 * b, "fp16": 1.5 * b, "fp32": 1.0 * b},
                 "plain_tickets_per_s": {"bf16": 2.2 * b, "fp16": 1.5 * b, "fp32": 1.1 * b},
                 "speedup_vs_fp32": {"bf16": 2.0, "fp16": 1.5},
                 "overhead_pct": {"bf16": 10.0, "fp16": 0.0, "fp32": 10.0}} for b in (16, 128)]
    results["sections"]["gpu"] = {"available": True, "device": "Some GPU", "max_length": 128, "cpu_threads": 8,
                                  "training": training, "run": run,
                                  "inference": {"n_texts": 608, "batch_size": 32, "tickets_per_s": 700.0,
                                                "lexical_share": 0.5}}
    text = bench.render_markdown(results)
    assert "| router training, batch 128 (150 steps), bf16 | 256.0 | 2.00× | 281.6 | +10.0% |" in text
    assert "| router training, batch 16 (150 steps), fp32 | 16.0 | 1.00× | 17.6 | +10.0% |" in text
    assert "50% of the GPU routing time" in text


def test_the_default_run_leaves_the_ablations_and_mtl_to_full_and_quick():
    assert "ablations" not in cli.selected_sections(None, PROFILES["default"])
    assert "mtl" not in cli.selected_sections(None, PROFILES["default"])
    assert cli.selected_sections("mtl", PROFILES["default"]) == ["mtl"]
    assert PROFILES["quick"].mtl_methods == ("uncertainty", "gradnorm") and 0 < PROFILES["quick"].mtl_max_steps <= 20
    assert PROFILES["full"].mtl_methods is None  # every METHODS entry
    assert cli.selected_sections(None, PROFILES["full"]) == list(SECTIONS)
    assert cli.selected_sections(None, PROFILES["quick"]) == list(SECTIONS)
    assert cli.selected_sections("ablations,router", PROFILES["default"]) == ["router", "ablations"]
    assert PROFILES["default"].seeds == 1 and PROFILES["full"].seeds == 3


def test_quick_and_full_exclude_each_other(capsys):
    assert cli.main(["--quick", "--full"]) == 2
    assert "--quick and --full exclude each other" in capsys.readouterr().err


def test_the_recorded_results_render_with_repository_paths():
    results = json.loads((REPO / "bench" / "results.json").read_text(encoding="utf-8"))
    text = report.render_markdown(results)
    assert "### Quality on the validation set" in text and "/work/" not in text


def test_the_bench_and_reuse_share_one_same_training_rule(tmp_path, monkeypatch):
    from dataclasses import asdict, replace

    from ticket_router.config import TrainConfig
    from ticket_router.training import training_key

    monkeypatch.chdir(tmp_path)
    base = TrainConfig(train="train.csv", tasks={"a": "x", "b": "y"}, loss_weighting="equal", output="one")
    key = training_key(asdict(base))
    assert training_key(asdict(replace(base, output="two", logging_steps=7))) == key  # where and how it logs
    assert training_key(asdict(replace(base, train=str(tmp_path / "train.csv")))) == key  # one file, two spellings
    assert training_key(asdict(replace(base, loss_weighting="fixed", task_weights={"a": 1.0}))) == key
    assert training_key(asdict(replace(base, loss_weighting="fixed", task_weights={"a": 2.0}))) != key
    assert training_key(asdict(replace(base, seed=7))) != key


TASKS = ("category", "urgency", "queue")


def test_every_mtl_method_is_a_valid_training_config(tmp_path):
    from ticket_router.config import TrainConfig
    from ticket_router.errors import InputError

    from bench.mtl_protocol import METHODS, run_config

    base = TrainConfig(train="train.csv", tasks={"category": "type", "urgency": "priority", "queue": "queue"},
                       output="unused", lexical_weight=0.5)
    configs = {name: run_config(base, tmp_path / name, flags) for name, flags in METHODS.items()}
    assert all(c.lexical_weight == 0 and c.output == str(tmp_path / name) for name, c in configs.items())
    assert configs["uncertainty"].learning_rate == base.learning_rate
    assert configs["lr2e4"].learning_rate == 2e-4 and configs["lr3e4"].learning_rate == 3e-4
    assert configs["gradnorm_lr2e4"].loss_weighting.value == "gradnorm" and configs["gradnorm_lr2e4"].learning_rate == 2e-4
    assert configs["warmup500"].uncertainty_warmup_steps == 500
    assert 0 < configs["uncertainty_floor"].uncertainty_weight_floor < 1
    assert configs["fixed_urgency3"].task_weights == {"urgency": 3.0}
    with pytest.raises(InputError, match="not all are `ticket-router train` flags"):
        run_config(base, tmp_path, ["--no-such-knob", "1"])


def test_mtl_section_compares_each_method_with_the_reference_and_the_single_task_encoders(bench_run):
    _, tmp, _ = bench_run
    mtl = json.loads((tmp / "results.json").read_text())["sections"]["mtl"]["sets"]["mtl"]  # the config's stem
    assert tuple(mtl["methods"]) == MTL_METHODS and tuple(mtl["single"]) == TASKS
    assert mtl["reference"] == "uncertainty" and mtl["budget"]["max_steps"] == 2 and mtl["test"].endswith("test.csv")
    reference, equal = mtl["methods"]["uncertainty"], mtl["methods"]["equal"]
    assert reference["step_time_vs_uncertainty"] == 1.0 and reference["encoder_vs_uncertainty"] is None
    assert equal["flags"] == ["--loss-weighting", "equal"] and equal["step_time_vs_uncertainty"] > 0
    for kind in ("encoder", "fused"):
        for task in TASKS:
            for versus in (equal[f"{kind}_vs_uncertainty"][task], equal[f"{kind}_vs_single"][task],
                           reference[f"{kind}_vs_single"][task]):
                assert versus["ci95"][0] <= versus["ci95"][1]
                assert versus["verdict"] in ("better", "worse", "same within noise")
            assert 0 <= equal[kind][task] <= 1 and 0 <= mtl["single"][task][kind] <= 1
    assert set(reference["gradient_conflict"]["pairs"]) == {"category_urgency", "category_queue", "urgency_queue"}
    trained = json.loads((tmp / "out" / "mtl" / "mtl" / "equal" / "training_config.json").read_text())
    assert trained["loss_weighting"] == "equal" and trained["lexical_weight"] == 0 and trained["max_steps"] == 2
    single = json.loads((tmp / "out" / "mtl" / "mtl" / "single" / "urgency" / "training_config.json").read_text())
    assert single["tasks"] == {"urgency": "priority"} and single["drop_partial_rows"]
    block = (tmp / "BENCHMARKS.md").read_text().split("### Multi-task balancing (`--only mtl`)")[1]
    assert "#### mtl\n\n_Measured by `python -m bench --data-dir" in block
    assert "| uncertainty (reference) | (config) | " in block and "| equal | --loss-weighting equal | " in block
    assert "| single-task urgency | one task, its labeled rows, equal | — | " in block
    assert "1.00× (" in block and "neg.) |" in block  # step time and the conflict summary


def test_only_mtl_on_another_config_adds_its_set_and_reuse_keeps_the_trainings(bench_run, tmp_path):
    bench, tmp, common = bench_run
    # The same config under another name, its trainings copied: --reuse must find them (same config) and train none.
    second = tmp_path / "second.yaml"
    shutil.copy(common[common.index("--mtl-config") + 1], second)
    shutil.copytree(tmp / "out" / "mtl" / "mtl", tmp_path / "out" / "mtl" / "second")
    shutil.copy(tmp / "results.json", tmp_path / "r.json")
    weights = tmp_path / "out" / "mtl" / "second" / "equal" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    rerun = [*common, "--out", str(tmp_path / "out"), "--results", str(tmp_path / "r.json"), "--benchmarks-md",
             str(tmp_path / "B.md"), "--only", "mtl", "--mtl-config", str(second), "--mtl-methods",
             "equal,uncertainty", "--reuse"]
    assert bench.main(rerun) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["sections"]) == set(SECTIONS) and weights.stat().st_mtime_ns == stamp
    sets = results["sections"]["mtl"]["sets"]
    assert list(sets) == ["mtl", "second"] and sets["mtl"]["reference"] == "uncertainty"
    mtl = sets["second"]
    assert mtl["reference"] == "equal" and all(m["reused"] for m in mtl["methods"].values())
    assert mtl["methods"]["uncertainty"]["encoder_vs_equal"]["urgency"]["verdict"]
    assert mtl["run"]["command"].endswith("--reuse") and mtl["config"].endswith("second.yaml")
    text = (tmp_path / "B.md").read_text().split("### Multi-task balancing (`--only mtl`)")[1]
    assert "#### mtl\n" in text and "#### second\n" in text
    assert "| equal (reference) | --loss-weighting equal |" in text and " reused |" in text


def test_mtl_flags_are_checked_before_anything_runs(bench_run, capsys):
    bench, tmp, common = bench_run
    assert bench.main([*common, "--only", "mtl", "--mtl-methods", "uncertainty,nope"]) == 2
    assert "--mtl-methods 'uncertainty,nope': unknown ['nope']" in capsys.readouterr().err
    i = common.index("--mtl-test")
    assert bench.main([*common[:i], *common[i + 2:], "--only", "mtl"]) == 2  # another config, no test file
    assert "give --mtl-test FILE too" in capsys.readouterr().err


def test_standalone_mtl_keeps_its_flags_and_json_keys(bench_run, tmp_path):
    from bench import mtl as standalone

    _, tmp, common = bench_run

    def flag(name: str) -> str:
        return common[common.index(name) + 1]

    output = tmp_path / "mtl.json"
    assert standalone.main(["--config", flag("--mtl-config"), "--train", flag("--mtl-train"),
                            "--validation", flag("--mtl-validation"), "--test", flag("--mtl-test"),
                            "--workdir", str(tmp / "out" / "mtl" / "mtl"), "--methods", "uncertainty,equal",
                            "--single", "urgency", "--reuse", "--resamples", "20", "--json", str(output)]) == 0
    results = json.loads(output.read_text())
    assert {"config", "test", "methods", "single", "machine"} <= set(results)
    assert {"flags", "seconds_per_step", "gradient_conflict", "final_task_weights", "load_average_after", "encoder",
            "fused", "step_time_vs_uncertainty", "encoder_vs_uncertainty", "fused_vs_uncertainty",
            "encoder_vs_single", "fused_vs_single"} <= set(results["methods"]["equal"])
    assert set(results["single"]) == {"urgency"} and {"encoder", "fused", "seconds_per_step"} <= set(results["single"]["urgency"])
