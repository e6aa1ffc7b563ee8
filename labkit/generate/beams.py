"""Beam search: keep the `num_beams` best partial sequences by summed log-probability and score a
finished one by sum / length**length_penalty.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .decoding import _check_ids, _eos_list, _Feeder


@dataclass
class BeamOutput:
    """The best finished hypotheses of `beam_search`, best first."""

    sequences: list[list[int]]  # prompt + generated ids
    scores: list[float]  # sum of log-probabilities / generated_length ** length_penalty
    prompt_length: int
    steps: int

    @property
    def best(self) -> list[int]:
        return self.sequences[0]

    @property
    def new_tokens(self) -> list[int]:
        return self.sequences[0][self.prompt_length:]


@torch.inference_mode()
def beam_search(model, input_ids: torch.Tensor, num_beams: int = 4, max_new_tokens: int = 32,
                length_penalty: float = 1.0, early_stopping: bool | str = False,
                eos_token_id: int | Sequence[int] | None = None, use_cache: bool = True) -> BeamOutput:
    """Beam search for one prompt, with the semantics of `model.generate(num_beams=..., do_sample=False)`.

    Each step extends every running beam by every token, keeps the 2 * num_beams best continuations by
    summed log-probability, moves those that end (EOS, or the length limit) among the best num_beams
    to the finished list with score sum / length ** length_penalty, and carries on with the best
    num_beams that did not end. `early_stopping`: True stops as soon as num_beams hypotheses are
    finished; False stops when the best running beam, scored at its current length, can no longer
    beat the worst finished one; "never" scores it at the longest possible length (when
    length_penalty > 0), as the textbook algorithm does.

    >>> out = beam_search(model, tok("The sea is", return_tensors="pt").input_ids, num_beams=4)  # doctest: +SKIP
    >>> tok.decode(out.new_tokens)                                                               # doctest: +SKIP
    """
    input_ids = _check_ids(input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError("beam_search takes one prompt (a batch of 1); loop over prompts")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    eos = _eos_list(model, eos_token_id)
    dev = input_ids.device
    eos_t = torch.tensor(eos, dtype=torch.long, device=dev)
    prompt_len = input_ids.shape[1]
    max_length = prompt_len + max_new_tokens
    n_keep = max(2, 1 + len(eos)) * num_beams  # enough that num_beams survive even if the best all end

    running = input_ids.repeat(num_beams, 1)  # the beams start identical ...
    running_scores = torch.full((num_beams,), -1e9, device=dev)
    running_scores[0] = 0.0  # ... so only the first counts at step one (no duplicate beams)
    finished: list[tuple[float, list[int]]] = []  # (score, ids), best first, at most num_beams
    may_improve = True  # can a running beam still beat the worst finished one?
    feeder = _Feeder(model, running, use_cache)
    logits = feeder.first()
    n_steps = 0
    while True:
        cur_len = running.shape[1]
        vocab = logits.shape[-1]
        logp = torch.log_softmax(logits, dim=-1) + running_scores[:, None]  # (beams, vocab)
        top_scores, top_idx = torch.topk(logp.reshape(-1), k=n_keep)
        from_beam, token = top_idx // vocab, top_idx % vocab
        candidates = torch.cat([running[from_beam], token[:, None]], dim=1)
        ends = torch.isin(token, eos_t) | (cur_len + 1 >= max_length)

        # Finished hypotheses: only candidates among the best num_beams may enter, and only while
        # the search can still improve (Hugging Face's rules).
        full_and_early = len(finished) == num_beams and early_stopping is True
        if may_improve and not full_and_early:
            gen_len = cur_len + 1 - prompt_len
            for i in range(num_beams):
                if ends[i]:
                    finished.append((float(top_scores[i] / (gen_len ** length_penalty)), candidates[i].tolist()))
            finished = sorted(finished, key=lambda f: -f[0])[:num_beams]

        # The running beams of the next step: the best num_beams candidates that did not end.
        alive_scores = top_scores + ends.float() * -1e9
        keep = torch.topk(alive_scores, k=num_beams).indices
        running, running_scores = candidates[keep], alive_scores[keep]

        cur_len += 1
        if len(finished) == num_beams:
            best_len = (max_length - prompt_len) if (early_stopping == "never" and length_penalty > 0) \
                else (cur_len - prompt_len)
            best_possible = float(running_scores[0] / (best_len ** length_penalty))
            may_improve = may_improve and best_possible > finished[-1][0]
        if not may_improve or (len(finished) == num_beams and early_stopping is True) or bool(ends.all()):
            break
        logits = feeder.next(running[:, -1], parents=from_beam[keep])
        n_steps += 1
    return BeamOutput([s for _, s in finished], [sc for sc, _ in finished], prompt_len, n_steps)
