"""Model helpers shared by chapters: sentence embeddings, chat generation, parameter counts."""
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


def chat(model, tokenizer, messages: list[dict[str, str]] | str, max_new_tokens: int = 64,
         do_sample: bool = False, **generate_kwargs) -> str:
    """Answer a conversation with a chat model through its chat template (greedy by default).

    >>> chat(model, tok, "What is the capital of France?")          # doctest: +SKIP
    'The capital of France is Paris.'
    """
    import torch

    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat template; use an instruct model such as "
                         "'smollm2-135m-instruct', or build the prompt text yourself")
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(next(model.parameters()).device)
    if not do_sample:
        # Greedy decoding: drop the sampling settings a generation config may carry, to avoid warnings.
        generate_kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **generate_kwargs)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


# The book's GPT (chapter 05) lives in labkit/gpt.py; it is re-exported here so chapters can write
# `from labkit.models import GPT, GPTConfig`.
from .gpt import GPT, GPTConfig  # noqa: E402
