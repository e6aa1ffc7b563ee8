"""Alignment on a real chat model (SmolLM2): chat batches, a reward model on its features, DPO and GRPO.

The losses are those of `labkit.align.objectives`; this module only turns (prompt, response) text into
the tensors they need, through the model's chat template:

- `chat_batch`: prompt (chat template, generation prompt) + response + end-of-turn token, right
  padded, with the mask of the response tokens;
- `sample_answers`: n sampled (or greedy) answers per prompt, batched with left padding;
- `response_features`, `train_reward_head`: a Bradley-Terry reward model = the frozen LM's last
  hidden state at the response's last token + a linear head;
- `dpo_train`: DPO on a LoRA adapter, the reference = the same model with the adapter switched off;
- `grpo_lm_step`: one GRPO update of a LoRA adapter with a verifiable reward.

    >>> batch = chat_batch(tok, ["What is 2+2?"], ["4"])   # doctest: +SKIP
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch
from torch import nn

from .objectives import (bradley_terry_loss, dpo_loss, first_scored, group_advantages, grpo_loss, sequence_logprobs,
                         token_logprobs)

__all__ = ["chat_batch", "sample_answers", "response_features", "train_reward_head", "dpo_train", "grpo_lm_step"]


def _prompt_text(tokenizer, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


def _end_id(tokenizer) -> int:
    # SmolLM2 ends an assistant turn with <|im_end|>, which is its eos token.
    return tokenizer.eos_token_id


def chat_batch(tokenizer, prompts: Sequence[str], responses: Sequence[str], device=None) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and completion_mask (1 on the response and its end token), right padded.

    >>> b = chat_batch(tok, ["Hi"], ["Hello."]); int(b["completion_mask"].sum())   # doctest: +SKIP
    3
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _end_id(tokenizer)
    rows, masks = [], []
    for p, r in zip(prompts, responses):
        p_ids = tokenizer(_prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(r, add_special_tokens=False)["input_ids"] + [_end_id(tokenizer)]
        rows.append(p_ids + r_ids)
        masks.append([0] * len(p_ids) + [1] * len(r_ids))
    n = max(map(len, rows))
    ids = torch.full((len(rows), n), pad, dtype=torch.long)
    att = torch.zeros(len(rows), n, dtype=torch.long)
    comp = torch.zeros(len(rows), n, dtype=torch.long)
    for i, (row, m) in enumerate(zip(rows, masks)):
        ids[i, :len(row)] = torch.tensor(row)
        att[i, :len(row)] = 1
        comp[i, :len(row)] = torch.tensor(m)
    return {"input_ids": ids.to(device), "attention_mask": att.to(device), "completion_mask": comp.to(device)}


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: Sequence[str], n: int = 1, max_new_tokens: int = 16,
                   temperature: float = 1.0, batch_size: int = 16, seed: int = 0) -> list[str]:
    """`n` answers per prompt (consecutive), sampled at `temperature` (0 = greedy), left-padded batches.

    Through the book's one batch helper, `labkit.generate.generate_batch`; this function adds several
    answers per prompt, reproducible from `seed`.

    >>> sample_answers(model, tok, ["What is the capital of Peru?"], n=2)   # doctest: +SKIP
    ['The capital of Peru is Lima.', 'Lima is the capital of Peru.']
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt in [...]")
    from ..generate import generate_batch

    texts = [p for p in prompts for _ in range(n)]
    if temperature <= 0:
        return generate_batch(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                              progress=False)
    torch.manual_seed(seed)  # once: the batches continue one random stream
    return generate_batch(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          progress=False, do_sample=True, temperature=temperature, top_k=0, top_p=1.0)


@torch.no_grad()
def response_features(model, tokenizer, prompts: Sequence[str], responses: Sequence[str],
                      batch_size: int = 16) -> torch.Tensor:
    """The LM's last hidden state at each response's end token: (n, hidden), float32 on the CPU.

    >>> response_features(model, tok, ["Hi"], ["Hello."]).shape   # doctest: +SKIP
    torch.Size([1, 576])
    """
    dev = next(model.parameters()).device
    feats = []
    for s in range(0, len(prompts), batch_size):
        b = chat_batch(tokenizer, prompts[s:s + batch_size], responses[s:s + batch_size], dev)
        # logits_to_keep=1: the hidden states are all needed, the vocabulary logits are not.
        hidden = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True,
                       logits_to_keep=1).hidden_states[-1]
        last = b["attention_mask"].sum(1) - 1  # right padding: the end-of-turn token of the response
        feats.append(hidden[torch.arange(len(last), device=dev), last].float().cpu())
    return torch.cat(feats)


def train_reward_head(chosen: torch.Tensor, rejected: torch.Tensor, epochs: int = 200, lr: float = 1e-2,
                      weight_decay: float = 1e-2, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """A linear reward r(x) = w . f(x) + b on fixed features, trained full-batch with Bradley-Terry.

    The features are standardised inside the head (mean and std of the training features), so one
    learning rate suits every model width. The loop is the book's `labkit.train.fit` (constant
    learning rate, no clipping, AdamW decaying the bias too, as a plain `torch.optim.AdamW` does);
    the head stays on the features' device.

    >>> head, losses = train_reward_head(torch.ones(4, 3), torch.zeros(4, 3), epochs=50)
    >>> losses[-1] < losses[0]
    True
    """
    from ..train import fit

    if chosen.shape != rejected.shape or chosen.dim() != 2:
        raise ValueError(f"chosen {tuple(chosen.shape)} and rejected {tuple(rejected.shape)} must be equal (n, d)")
    torch.manual_seed(seed)
    both = torch.cat([chosen, rejected])
    head = nn.Sequential(_Standardise(both.mean(0), both.std(0) + 1e-6), nn.Linear(chosen.shape[1], 1))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    history = fit(head, itertools.repeat((chosen, rejected)),
                  lambda m, b: bradley_terry_loss(m(b[0]).squeeze(-1), m(b[1]).squeeze(-1)), steps=epochs,
                  optimizer=opt, lr=lr, warmup=0.0, min_lr_ratio=1.0, clip=None, device=chosen.device,
                  progress=False)
    return head.eval(), history.train_loss


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def dpo_train(model, tokenizer, pairs: Sequence[dict], steps: int, beta: float = 0.1, lr: float = 5e-4,
              batch_size: int = 8, sft_weight: float = 0.0, seed: int = 0, progress: bool = True,
              on_step: Callable[[int, list[dict[str, float]]], bool | None] | None = None) -> list[dict[str, float]]:
    """DPO on a PEFT (LoRA) model: the reference is the same model with its adapter disabled.

    `sft_weight` > 0 adds that times the mean negative log-likelihood of the chosen responses' tokens
    (TRL's `loss_type=["sigmoid", "sft"]`, `loss_weights=[1, sft_weight]`; RPO, Pang et al. 2024):
    DPO alone only widens the gap between chosen and rejected, and may do so by lowering both.
    The reference log-probabilities never change, so each batch's are computed once, the first time
    the batch is drawn (a short run never pays for batches it does not draw). The loop is the book's
    `labkit.train.fit` (AdamW without weight decay, constant learning rate, no clipping);
    `on_step(step, history)` runs after every update (evaluate, keep a snapshot; True stops).
    Returns one dict per step: loss, DPO loss, reward margin, reward accuracy on the batch.

    >>> history = dpo_train(lora_model, tok, pairs, steps=10)   # doctest: +SKIP
    """
    from ..train import fit

    if not hasattr(model, "disable_adapter"):
        raise TypeError("dpo_train needs a PEFT model (peft.get_peft_model); its base model is the reference")
    if not pairs:
        raise ValueError("dpo_train needs at least one preference pair")
    if sft_weight < 0:
        raise ValueError(f"sft_weight must be >= 0; got {sft_weight}")
    dev = next(model.parameters()).device
    batches = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        prompts = [p["prompt"] for p in chunk] * 2
        batches.append(chat_batch(tokenizer, prompts, [p["chosen"] for p in chunk] + [p["rejected"] for p in chunk],
                                  dev))
    g = torch.Generator().manual_seed(seed)

    def draws():  # batch indices: `fit` copies what it is given, the cache of reference log-probs stays here
        while True:
            yield int(torch.randint(len(batches), (1,), generator=g))

    history: list[dict[str, float]] = []

    def loss_fn(m, i):
        b = batches[i]
        if "ref" not in b:
            m.eval()
            with torch.no_grad(), m.disable_adapter():
                b["ref"] = sequence_logprobs(m, b["input_ids"], b["completion_mask"], b["attention_mask"])
            m.train()
        lp = sequence_logprobs(m, b["input_ids"], b["completion_mask"], b["attention_mask"])
        pc, pr = lp.chunk(2)
        rc, rr = b["ref"].chunk(2)
        loss, chosen_r, rejected_r = dpo_loss(pc, pr, rc, rr, beta)
        row = {"dpo_loss": loss.item()}
        if sft_weight > 0:
            start = first_scored(b["completion_mask"])
            chosen_tokens = b["completion_mask"].chunk(2)[0][:, start + 1:].sum()
            loss = loss + sft_weight * (-pc.sum() / chosen_tokens)  # mean NLL per chosen token, as TRL's "sft"
        history.append({"loss": loss.item(), **row, "margin": float((chosen_r - rejected_r).mean()),
                        "accuracy": float((chosen_r > rejected_r).float().mean())})
        return loss

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    fit(model, draws(), loss_fn, steps=steps, optimizer=opt, lr=lr, warmup=0.0, min_lr_ratio=1.0, clip=None,
        device=dev, progress=progress, desc="DPO", on_step=None if on_step is None else lambda s, _: on_step(s, history))
    return history


def grpo_lm_step(model, tokenizer, prompts: Sequence[str], reward: Callable[[int, str], float], optimizer,
                 group_size: int = 4, max_new_tokens: int = 12, temperature: float = 1.0,
                 epsilon: float = 0.2, seed: int = 0) -> dict[str, float]:
    """One GRPO update of a LoRA adapter: a group of sampled answers per prompt, `reward(i, answer)`
    for prompt i, group advantages, one clipped step (ratio 1: TRL's default of one iteration) and
    no KL term (beta = 0, TRL's default).

    >>> grpo_lm_step(lora_model, tok, prompts, reward, opt)   # doctest: +SKIP
    """
    answers = sample_answers(model, tokenizer, prompts, n=group_size, max_new_tokens=max_new_tokens,
                             temperature=temperature, batch_size=len(prompts) * group_size, seed=seed)
    rewards = torch.tensor([reward(i // group_size, a) for i, a in enumerate(answers)])
    adv = group_advantages(rewards, group_size)
    if torch.all(adv == 0):
        return {"reward": float(rewards.mean()), "loss": 0.0, "answers": answers}
    dev = next(model.parameters()).device
    b = chat_batch(tokenizer, [p for p in prompts for _ in range(group_size)], answers, dev)
    model.train()
    start = first_scored(b["completion_mask"])  # the prompts' logits are never scored
    lp = token_logprobs(model, b["input_ids"], b["attention_mask"], start)
    mask = b["completion_mask"][:, start + 1:].float()
    loss = grpo_loss(lp, lp.detach(), adv.to(dev), mask, epsilon_low=epsilon, epsilon_high=epsilon)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.eval()
    return {"reward": float(rewards.mean()), "loss": loss.item(), "answers": answers}
