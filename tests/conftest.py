"""Tests run offline, from the book's root, with a shared labkit cache (the converted SmolLM2)."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("LABKIT_ROOT", str(ROOT))
os.environ.pop("LABKIT_PROFILE", None)
os.environ.pop("LABKIT_METRICS_FILE", None)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models decode token by token, and on a busy machine
    extra threads only spin and wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    """SmolLM2's tokenizer (the bundled chat model's)."""
    from transformers import AutoTokenizer

    from labkit import assets

    return AutoTokenizer.from_pretrained(assets.path("smollm2-135m-instruct"))


@pytest.fixture(scope="module")
def tiny_chat(tok):
    """A random 1-layer llama over SmolLM2's whole vocabulary (chat-template prompts fit); a large init
    makes its outputs peaked, so greedy and sampled decoding are stable across batching."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, initializer_range=0.3)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = 2
    return model
