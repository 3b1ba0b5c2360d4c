"""`ticket-router export` and the ONNX Runtime backend: parity with PyTorch, int8, manifest, checksums, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tiny_router import build_router_dir, harbor_texts
from ticket_router.cli import main
from ticket_router.errors import InputError
from ticket_router.export import MANIFEST_NAME, export_router
from ticket_router.onnx_backend import OnnxRouter
from ticket_router.router import Router

pytest.importorskip("onnxruntime")

# Padded batches, an empty ticket and one far longer than max_length (truncated as in predict).
TEXTS = harbor_texts(20) + ["", "x", "printer " * 400]


@pytest.fixture(scope="module")
def router_dir(bert_dir, tmp_path_factory):
    return build_router_dir(bert_dir, tmp_path_factory.mktemp("router"))  # BERT: token_type_ids is a graph input


@pytest.fixture(scope="module")
def exports(router_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    export_router(router_dir, out / "fp32")
    export_router(router_dir, out / "int8", quantize="int8")
    return out / "fp32", out / "int8"


def assert_same_routing(torch_router, onnx_router, atol=1e-4):
    assert isinstance(onnx_router, OnnxRouter) and not isinstance(torch_router, OnnxRouter)
    for method in ("encoder_proba", "predict_proba"):  # encoder heads alone, then fused with the lexical heads
        expected, got = getattr(torch_router, method)(TEXTS, batch_size=8), getattr(onnx_router, method)(TEXTS, batch_size=8)
        assert set(got) == set(expected)
        for task in expected:
            np.testing.assert_allclose(got[task], expected[task], atol=atol, rtol=0)
    records, onnx_records = torch_router.route(TEXTS), onnx_router.route(TEXTS)
    tasks = torch_router.task_names
    assert [{t: r[t]["label"] for t in tasks} for r in onnx_records] == [{t: r[t]["label"] for t in tasks} for r in records]
    assert [r["route"] for r in onnx_records] == [r["route"] for r in records]  # the routing decision travels too
    assert set(onnx_records[0]) == set(records[0])
    assert set(onnx_records[0]["queue"]) == set(records[0]["queue"]) >= {"label", "confidence", "scores", "decision"}


def test_fp32_export_matches_pytorch_probabilities(router_dir, exports):
    assert_same_routing(Router.from_pretrained(router_dir, device="cpu"), Router.from_pretrained(exports[0]))


def test_fp32_export_of_an_encoder_without_token_types_matches_too(distilbert_dir, tmp_path):
    source = build_router_dir(distilbert_dir, tmp_path / "distilbert", pooling="cls")
    export_router(source, tmp_path / "fp32")
    assert json.loads((tmp_path / "fp32" / MANIFEST_NAME).read_text())["inputs"] == ["input_ids", "attention_mask"]
    assert_same_routing(Router.from_pretrained(source, device="cpu"), Router.from_pretrained(tmp_path / "fp32"))


def test_int8_export_loads_routes_and_is_smaller(router_dir, exports):
    fp32, int8 = exports
    manifest = json.loads((int8 / MANIFEST_NAME).read_text())
    assert manifest["quantization"] == "int8" and manifest["exporter"] == "torchscript"
    assert (int8 / "model.onnx").stat().st_size < (fp32 / "model.onnx").stat().st_size
    router = Router.from_pretrained(int8)
    proba = router.predict_proba(TEXTS)
    expected = Router.from_pretrained(router_dir, device="cpu").predict_proba(TEXTS)
    for task, p in proba.items():
        assert p.shape == expected[task].shape
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        assert np.abs(p - expected[task]).max() < 0.05  # quantised, but the same model
    assert len(router.route(TEXTS[:3])) == 3


def test_exports_hold_fused_attention_and_per_channel_int8_weights(exports):
    import onnx

    fp32, int8 = exports
    manifest = json.loads((fp32 / MANIFEST_NAME).read_text())
    assert manifest["fused_ops"]["Attention"] == 2 and manifest["fused_ops"]["EmbedLayerNormalization"] == 1
    ops = {node.op_type for node in onnx.load(str(fp32 / "model.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops and "Softmax" not in ops  # no unfused attention left
    graph = onnx.load(str(int8 / "model.onnx")).graph
    weights = {init.name: init for init in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMulInteger"]
    ops = {node.op_type for node in graph.node}
    assert matmuls and "QAttention" in ops and "EmbedLayerNormalization" in ops  # embeddings stay float
    for node in matmuls:  # per-channel: one weight zero point per output column
        weight, zero_point = weights[node.input[1]], weights[node.input[3]]
        assert weight.data_type == onnx.TensorProto.INT8 and list(zero_point.dims) == [weight.dims[1]]


def test_sessions_run_sequentially_on_the_threads_asked(exports):
    from ticket_router.onnx_backend import physical_cores

    default = Router.from_pretrained(exports[1]).model.session.get_session_options()
    assert default.intra_op_num_threads == physical_cores() and default.inter_op_num_threads == 1
    assert default.execution_mode.name == "ORT_SEQUENTIAL"
    assert default.graph_optimization_level.name == "ORT_ENABLE_ALL"
    assert default.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert Router.from_pretrained(exports[1], threads=1).model.session.get_session_options().intra_op_num_threads == 1


def test_manifest_lists_tasks_files_checksums_and_leaves_torch_weights_behind(router_dir, exports):
    fp32 = exports[0]
    manifest = json.loads((fp32 / MANIFEST_NAME).read_text())
    saved = json.loads((router_dir / "config.json").read_text())["tasks"]
    assert [(t["name"], t["labels"]) for t in manifest["tasks"]] == [(t["name"], t["labels"]) for t in saved]
    assert manifest["opset"] == 17 and manifest["quantization"] == "none"
    assert {"torch", "onnxruntime", "onnx"} <= set(manifest["versions"])
    assert {"model.onnx", "config.json", "tokenizer.json", "lexical.json", "lexical.safetensors"} <= set(manifest["files"])
    assert all(len(digest) == 64 for digest in manifest["files"].values())
    assert not (fp32 / "model.safetensors").exists() and not list(fp32.glob("tmp*"))


def test_checksums_are_verified_on_load(exports, tmp_path):
    import shutil

    broken = shutil.copytree(exports[0], tmp_path / "broken")
    with (broken / "lexical.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(InputError, match=r"lexical\.json: checksum mismatch"):
        Router.from_pretrained(broken)
    shutil.copy(exports[0] / "lexical.json", broken / "lexical.json")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(InputError, match=r"tokenizer\.json: missing"):
        Router.from_pretrained(broken)


def test_export_refuses_what_is_not_a_router_dir(router_dir, exports, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", "--model", str(tmp_path / "empty"), "--output", str(tmp_path / "o1")]) == 2
    assert "not a ticket_router model directory" in capsys.readouterr().err
    assert main(["export", "--model", str(exports[0]), "--output", str(tmp_path / "o2")]) == 2
    assert "already an export" in capsys.readouterr().err
    assert main(["export", "--model", str(router_dir), "--output", str(exports[1])]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and len(err.strip().splitlines()) == 1


def test_predict_and_evaluate_accept_an_export_dir(router_dir, exports, tmp_path, capsys):
    from conftest import harbor_rows, write_csv

    data = write_csv(tmp_path / "val.csv", harbor_rows("validation", 12))
    outputs = {}
    for name, model in (("torch", router_dir), ("onnx", exports[0])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["-q", "predict", "--model", str(model), "--input", str(data), "--output", str(out)]) == 0
        outputs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in outputs["onnx"]] == [r["id"] for r in outputs["torch"]]
    assert [r["category"]["label"] for r in outputs["onnx"]] == [r["category"]["label"] for r in outputs["torch"]]
    capsys.readouterr()
    assert main(["-q", "evaluate", "--model", str(exports[1]), "--data", str(data)]) == 0
    assert set(json.loads(capsys.readouterr().out)["tasks"]) == {"category", "urgency", "queue"}


def test_routing_an_export_does_not_import_torch(exports):
    script = (
        "import sys, ticket_router\n"
        f"records = ticket_router.Router.from_pretrained({str(exports[1])!r}).route(['printer jam'])\n"
        "assert set(records[0]) == {'category', 'urgency', 'queue', 'route', 'review_reasons'}, records\n"
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_dynamo_exporter_matches_pytorch_too(router_dir, tmp_path):
    export_router(router_dir, tmp_path / "dynamo", exporter="dynamo")
    assert_same_routing(Router.from_pretrained(router_dir, device="cpu"), Router.from_pretrained(tmp_path / "dynamo"))


def test_without_the_serve_extra_commands_say_what_to_install(router_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it raises ImportError
    assert main(["export", "--model", str(router_dir), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ('ticket-router: error: onnxruntime is not installed: '
                                                'pip install "ticket_router[serve]"')
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "--model", str(router_dir)]) == 2
    assert "fastapi is not installed" in capsys.readouterr().err


def test_an_export_carries_the_policy_with_its_non_voting_heads(router_dir, tmp_path):
    import shutil

    from ticket_router.policy import HeadPolicy, RoutingPolicy
    from ticket_router.serve import model_info

    model = shutil.copytree(router_dir, tmp_path / "model")
    RoutingPolicy(heads={"category": HeadPolicy(0.0), "urgency": HeadPolicy(None, 0.9, votes=False, max_target=0.7)},
                  consistency=False).save(model)
    export_router(model, tmp_path / "export")
    onnx_router = Router.from_pretrained(tmp_path / "export")
    assert isinstance(onnx_router, OnnxRouter) and onnx_router.policy == RoutingPolicy.load(model)
    records = onnx_router.route(TEXTS[:3])
    assert all(r["urgency"]["decision"] == "review" and r["route"] == "auto" for r in records)
    info = model_info(onnx_router, tmp_path / "export")
    assert info["votes"] == {"category": True, "urgency": False} and info["max_target"]["urgency"] == 0.7


def test_routing_speed_bench_alternates_models_and_scores_each(router_dir, exports, tmp_path, capsys, monkeypatch):
    import torch

    from bench import routing_speed
    from conftest import harbor_rows, write_csv

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # main() sets it if unset: restored after the test
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # process-wide: the bench would change it for all

    data = write_csv(tmp_path / "val.csv", harbor_rows("validation", 10))
    out = tmp_path / "speed.json"
    assert routing_speed.main(["--torch", str(router_dir), "--fp32", str(exports[0]), "--int8", str(exports[1]),
                               "--data", str(data), "--n", "8", "--batch-size", "4", "--repeats", "2",
                               "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 8 and list(result["models"]) == ["torch", "onnx_fp32", "onnx_int8"]
    for parts in result["models"].values():
        assert all(len(parts[part]["seconds"]) == 2 for part in ("encoder", "routed"))
    assert result["models"]["onnx_fp32"]["routed"]["agreement_with_torch"] == {"category": 1.0, "urgency": 1.0, "queue": 1.0}
    assert "| onnx_int8 | routed (fused) |" in capsys.readouterr().out

