"""Decoding written from scratch on a causal LM's logits, step for step equal to Hugging Face `generate`.

A decoder turns next-token logits into text, one token at a time. One idea per module:

- `processors`: *logits processors* reshape the scores first, in Hugging Face's order: repetition
  penalty, temperature, top-k, top-p (`process_logits`);
- `decoding`: *greedy* decoding takes the arg-max, *sampling* draws from softmax(scores) with
  `torch.multinomial` (the same call as `generate`, so the same seed gives the same tokens)
  (`generate`); a *KV cache* (`DynamicCache`) keeps every layer's keys and values, so each step
  feeds one new token instead of the whole sequence; *stop sequences* end a generation on a string;
- `streaming`: `stream` yields the text as it grows;
- `beams`: *beam search* keeps the `num_beams` best partial sequences by summed log-probability and
  scores a finished one by sum / length**length_penalty (`beam_search`);
- `measures`: measures of generated text, `distinct_n`, `repetition_rate`, `continuation_nats`;
- `answers`: the book's one chat helper, `chat` (greedy answer to one conversation, optionally with a
  confidence score) and `generate_batch` (greedy answers to many prompts at once, left padding).

Everything is importable from `labkit.generate` itself, as before the split.

    >>> out = generate(model, tok("The sea is", return_tensors="pt").input_ids, max_new_tokens=8)  # doctest: +SKIP
    >>> tok.decode(out.new_tokens[0])                                                              # doctest: +SKIP
"""
from .beams import BeamOutput, beam_search
from .answers import chat, generate_batch
from .decoding import GenerationOutput, cut_at_stop, generate, new_cache
from .measures import continuation_nats, distinct_n, repetition_rate, words
from .processors import (NEG_INF, apply_repetition_penalty, apply_temperature, process_logits, top_k_filter,
                         top_p_filter)
from .streaming import stream

__all__ = ["apply_temperature", "top_k_filter", "top_p_filter", "apply_repetition_penalty", "process_logits",
           "new_cache", "generate", "GenerationOutput", "beam_search", "BeamOutput", "stream",
           "distinct_n", "repetition_rate", "words", "continuation_nats", "generate_batch", "chat"]
