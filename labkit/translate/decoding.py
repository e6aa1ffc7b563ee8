"""Decoding an encoder-decoder: `greedy_decode`, `beam_search` (checked against `transformers`'
`generate`), `translate` (text in, text out) and `cross_attention` (the weights a plot shows).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .model import _forward_fn, Seq2SeqTransformer
from .tokens import _pad, BOS, EOS, PAD


class _Steps:
    """encode once, then next-token logits for a batch of prefixes: the two calls decoding needs."""

    def __init__(self, model):
        self.model = model
        self.hf = not isinstance(model, Seq2SeqTransformer)
        _forward_fn(model)  # validates the type

    def encode(self, src, src_mask):
        if self.hf:
            return self.model.get_encoder()(input_ids=src, attention_mask=src_mask).last_hidden_state
        return self.model.encode(src, src_mask)

    def next_logits(self, memory, src_mask, prefix):
        # The prefix is re-run every step (no key/value cache): simple, and cheap for short sentences.
        if self.hf:
            from transformers.modeling_outputs import BaseModelOutput

            return self.model(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=src_mask,
                              decoder_input_ids=prefix).logits[:, -1].float()
        return self.model.decode(prefix, memory, src_mask)[:, -1].float()


def _as_batch(src: Sequence[Sequence[int]] | torch.Tensor, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(src, torch.Tensor):
        src = src[None] if src.dim() == 1 else src
    else:
        if not src or isinstance(src[0], int):
            raise TypeError("src must be a list of token-id lists (one per sentence) or a tensor")
        src = _pad(src, pad_id)
    src = src.to(device)
    return src, (src != pad_id).long()


@torch.no_grad()
def greedy_decode(model, src: Sequence[Sequence[int]] | torch.Tensor, bos_id: int = 1, eos_id: int = 2,
                  pad_id: int = 0, max_len: int = 64) -> list[list[int]]:
    """Pick the most probable next token until `</s>`: a batch of sentences at once.

    Returns each output's token ids without `<s>` and `</s>`.

    >>> greedy_decode(model, [[12, 40, 2]])                          # doctest: +SKIP
    [[57, 9]]
    """
    model.eval()
    device = next(model.parameters()).device
    src, src_mask = _as_batch(src, pad_id, device)
    steps = _Steps(model)
    memory = steps.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = steps.next_logits(memory, src_mask, ys).argmax(-1)
        nxt = nxt.masked_fill(done, pad_id)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if done.all():
            break
    out = []
    for row in ys[:, 1:].tolist():
        out.append(row[:row.index(eos_id)] if eos_id in row else row)
    return out


@torch.no_grad()
def beam_search(model, src: Sequence[int] | torch.Tensor, num_beams: int = 4, bos_id: int = 1, eos_id: int = 2,
                pad_id: int = 0, max_len: int = 64, length_penalty: float = 1.0) -> list[int]:
    """Keep the `num_beams` best partial translations by total log-probability; return the best finished one.

    A finished hypothesis y scores log p(y|x) / |y|^length_penalty (|y| counts `</s>`), so long
    outputs are not punished just for having more factors < 1. Semantics of `transformers`'
    `generate(num_beams=k, early_stopping=True)`: each step ranks 2k candidates; a `</s>` candidate
    ranked in the top k is set aside as finished; search stops once k are finished.

    >>> beam_search(model, [12, 40, 2], num_beams=4)                 # doctest: +SKIP
    [57, 9]
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1; got {num_beams}")
    model.eval()
    device = next(model.parameters()).device
    src_t = torch.as_tensor(src, dtype=torch.long)
    if src_t.dim() != 1:
        raise ValueError("beam_search translates one sentence: give a 1-D list of token ids")
    src_b, mask_b = _as_batch(src_t, pad_id, device)
    steps = _Steps(model)
    memory = steps.encode(src_b, mask_b)
    beams: list[tuple[float, list[int]]] = [(0.0, [bos_id])]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(max_len):
        prefix = torch.tensor([seq for _, seq in beams], device=device)
        n = len(beams)
        logp = steps.next_logits(memory.expand(n, -1, -1), mask_b.expand(n, -1), prefix).log_softmax(-1)
        total = torch.tensor([s for s, _ in beams], device=device)[:, None] + logp
        scores, idx = total.flatten().topk(min(2 * num_beams, total.numel()))
        new: list[tuple[float, list[int]]] = []
        for rank, (score, i) in enumerate(zip(scores.tolist(), idx.tolist())):
            b, tok = divmod(i, logp.shape[-1])
            seq = beams[b][1]
            if tok == eos_id:
                if rank < num_beams:  # only an end that is competitive counts as a finished hypothesis
                    finished.append((score / (len(seq) ** length_penalty), seq[1:]))
            else:
                new.append((score, seq + [tok]))
            if len(new) == num_beams:
                break
        if len(finished) >= num_beams:
            break
        beams = new
    else:  # out of length: unfinished beams compete too
        finished += [(s / ((len(seq) - 1) ** length_penalty), seq[1:]) for s, seq in beams]
    return max(finished, key=lambda f: f[0])[1]


def translate(model, tokenizer, texts: Sequence[str], num_beams: int = 1, max_len: int = 64,
              batch_size: int = 64, progress: bool = False) -> list[str]:
    """Texts in, translations out: greedy (`num_beams=1`, batched) or beam search.

    >>> translate(model, tok, ["<2fr> twenty-one"])                  # doctest: +SKIP
    ['vingt et un']
    """
    from tqdm.auto import tqdm

    if isinstance(texts, str):
        raise TypeError("translate takes a list of texts; wrap a single text in [...]")
    bos, eos, pad = (tokenizer.token_to_id(t) for t in (BOS, EOS, PAD))
    ids = [e.ids + [eos] for e in tokenizer.encode_batch(list(texts))]
    out: list[list[int]] = []
    if num_beams == 1:
        for b in tqdm(range(0, len(ids), batch_size), desc="greedy", disable=not progress):
            out += greedy_decode(model, ids[b:b + batch_size], bos, eos, pad, max_len)
    else:
        for s in tqdm(ids, desc=f"beam {num_beams}", disable=not progress):
            out.append(beam_search(model, s, num_beams, bos, eos, pad, max_len))
    return [tokenizer.decode(o).strip() for o in out]


@torch.no_grad()
def cross_attention(model: Seq2SeqTransformer, src_ids: Sequence[int], tgt_ids: Sequence[int],
                    layer: int = -1) -> torch.Tensor:
    """Cross-attention weights (len(tgt_ids), len(src_ids)) of one decoder layer, mean over heads:
    row i says where in the source the decoder looked while predicting target token i.

    >>> cross_attention(model, [12, 40, 2], [1, 57, 9]).shape         # doctest: +SKIP
    torch.Size([3, 3])
    """
    if not isinstance(model, Seq2SeqTransformer):
        raise TypeError("cross_attention reads the weights of a Seq2SeqTransformer")
    model.eval()
    device = next(model.parameters()).device
    src = torch.tensor([list(src_ids)], device=device)
    mask = torch.ones_like(src)
    _, cross = model.decode(torch.tensor([list(tgt_ids)], device=device), model.encode(src, mask), mask,
                            need_weights=True)
    return cross[layer][0].mean(0).cpu()
