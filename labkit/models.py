"""Model helpers shared by chapters: sentence embeddings, parameter counts (and `chat`, re-exported)."""
from __future__ import annotations

from typing import Sequence


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of a torch module.

    >>> import torch; count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def encode_sentences(texts: Sequence[str], model, tokenizer, batch_size: int = 64,
                     normalize: bool = True, max_length: int = 256):
    """Sentence embeddings by mean pooling over tokens (padding excluded), as all-MiniLM does.

    >>> model, tok = labkit.assets.load_model("minilm-l6", task="encoder")   # doctest: +SKIP
    >>> encode_sentences(["a cat", "a dog"], model, tok).shape  # doctest: +SKIP
    torch.Size([2, 384])
    """
    import torch

    if isinstance(texts, str):
        raise TypeError("encode_sentences takes a list of strings; wrap a single text in [...]")
    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(emb, dim=-1) if normalize else emb)
    return torch.cat(out).cpu()


# The book's GPT (chapter 05) lives in labkit/gpt.py; it is re-exported here so chapters can write
# `from labkit.models import GPT, GPTConfig`.
from .gpt import GPT, GPTConfig  # noqa: E402

# The chat helper's one home is labkit.generate (chapter 10); re-exported so that chapters can
# write `models.chat(model, tok, messages)`.
from .generate import chat  # noqa: E402
