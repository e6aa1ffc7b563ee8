"""Real loads of the bundled models (no mocks). The first SmolLM2 load converts the GGUF file once."""
import pytest
import torch

from labkit import assets, generate, models


def test_sources_are_inside_the_installed_packages():
    assert assets.source("smollm2-135m-instruct").suffix == ".gguf"
    assert (assets.source("minilm-l6") / "model.safetensors").is_file()


def test_unknown_asset_and_task_are_clear_errors():
    with pytest.raises(assets.AssetError, match="bundled assets: smollm2-135m-instruct, minilm-l6"):
        assets.path("gpt3")
    with pytest.raises(assets.AssetError, match="valid tasks: causal-lm, encoder"):
        assets.load_model("minilm-l6", task="vision")


def test_hub_id_offline_names_the_bundled_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(assets.AssetError, match="use the bundled copy 'minilm-l6'"):
        assets.resolve("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(assets.AssetError, match="use a bundled model"):
        assets.resolve("openai-community/gpt2")


def test_hub_id_is_passed_through_when_the_hub_is_on(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert assets.resolve("openai-community/gpt2") == "openai-community/gpt2"


def test_minilm_embeddings_rank_paraphrases_above_unrelated_sentences():
    model, tok = assets.load_model("minilm-l6", task="encoder")
    assert model.config.hidden_size == 384 and models.count_parameters(model) == 22_713_216
    e = models.encode_sentences(["A man is playing a guitar.", "Someone is playing an instrument.",
                                 "The central bank raised interest rates."], model, tok)
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.5 > 0.1 > sim[0, 2]
    with pytest.raises(TypeError, match="list of strings"):
        models.encode_sentences("one string", model, tok)


@pytest.mark.slow
def test_smollm2_converts_once_and_answers_through_its_chat_template():
    p = assets.path("smollm2-135m-instruct")
    assert (p / "config.json").is_file() and (p / "model.safetensors").is_file()
    assert assets.path("smollm2-135m-instruct") == p  # cached: no second conversion
    model, tok = assets.load_model("smollm2-135m-instruct")
    assert model.config.model_type == "llama" and 134e6 < models.count_parameters(model) < 136e6
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "Paris" in generate.chat(model, tok, "What is the capital of France?", max_new_tokens=16)
