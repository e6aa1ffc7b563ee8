"""The losses of alignment, written out: sequence log-probabilities, Bradley-Terry, DPO, GRPO, PPO.

Every function works on plain tensors, so the same lines train the book's tiny GPT and a LoRA
adapter on SmolLM2, and chapter 19 checks them against TRL's trainers on the same batch:

- `token_logprobs` / `sequence_logprobs`: log pi(y | x) of a response, token by token or summed;
- `bradley_terry_loss`: a reward model's loss on (chosen, rejected) pairs, -log sigma(r_c - r_r);
- `dpo_loss`: DPO (Rafailov et al., 2023), TRL's `loss_type="sigmoid"`;
- `group_advantages` and `grpo_loss`: GRPO (Shao et al., 2024) as TRL's `GRPOTrainer` computes it
  (`loss_type="grpo"`: clipped ratio, k3 KL to the reference, mean over tokens then over sequences);
- `ppo_loss` and `kl_penalised_rewards`: the PPO step of InstructGPT (Ouyang et al., 2022) with the
  KL penalty folded into the reward;
- `pass_at_k`: the unbiased pass@k estimator of Chen et al. (2021).

    >>> round(float(bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]))), 4)
    0.1269
"""
from __future__ import annotations

from math import comb

import torch
import torch.nn.functional as F

from ..gpt import GPT

__all__ = ["token_logprobs", "first_scored", "sequence_logprobs", "bradley_terry_loss", "dpo_loss", "group_advantages",
           "kl_k3", "grpo_loss", "kl_penalised_rewards", "ppo_loss", "pass_at_k"]


def _logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, keep: int = 0) -> torch.Tensor:
    # A Hugging Face model returns an output object with .logits; the book's GPT returns (logits, loss)
    # and has no padding mask (its batches are right-padded, so a causal model never looks at the pads).
    # keep > 0: only the last `keep` positions; a Hugging Face model then skips the vocabulary
    # projection of the others (SmolLM2's 49k-word head is a fifth of its forward pass).
    if isinstance(model, GPT):
        logits = model(input_ids)[0]
        return logits[:, -keep:] if keep else logits
    return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   start: int = 0) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t = start+1..T-1: shape (batch, T-1-start), aligned with
    `input_ids[:, start + 1:]`. `start` skips positions nobody scores (a shared prompt), and their logits.

    >>> from labkit.gpt import GPT, GPTConfig
    >>> m = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8))
    >>> token_logprobs(m, torch.zeros(2, 4, dtype=torch.long)).shape
    torch.Size([2, 3])
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length); got shape {tuple(input_ids.shape)}")
    if not 0 <= start < input_ids.shape[1] - 1:
        raise ValueError(f"start must be in 0..{input_ids.shape[1] - 2} for sequences of length "
                         f"{input_ids.shape[1]}; got {start}")
    logits = _logits(model, input_ids, attention_mask, keep=input_ids.shape[1] - start)[:, :-1].float()
    # log_softmax then gather: the log-probability of the token that actually came next.
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, start + 1:, None]).squeeze(-1)


def first_scored(completion_mask: torch.Tensor) -> int:
    """The `start` for `token_logprobs` that still covers every response token of the batch.

    >>> first_scored(torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1]]))
    1
    """
    cols = completion_mask[:, 1:].any(dim=0).nonzero()
    return int(cols[0]) if len(cols) else 0


def sequence_logprobs(model, input_ids: torch.Tensor, completion_mask: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(y | x) = sum of the log-probabilities of the response tokens (completion_mask == 1).

    `completion_mask` has the shape of `input_ids` and marks the response tokens; the prompt and the
    padding are 0, so they are context but not scored.

    >>> from labkit.gpt import GPT, GPTConfig
    >>> m = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8))
    >>> ids = torch.tensor([[1, 2, 3, 4]]); mask = torch.tensor([[0, 0, 1, 1]])
    >>> bool(torch.isclose(sequence_logprobs(m, ids, mask), token_logprobs(m, ids)[:, 1:].sum(1)))
    True
    """
    if completion_mask.shape != input_ids.shape:
        raise ValueError(f"completion_mask {tuple(completion_mask.shape)} must have the shape of input_ids "
                         f"{tuple(input_ids.shape)}")
    start = first_scored(completion_mask)
    return (token_logprobs(model, input_ids, attention_mask, start) * completion_mask[:, start + 1:]).sum(dim=1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry: P(chosen preferred) = sigma(r_c - r_r); the loss is its mean negative log.

    `logsigmoid` instead of log(sigmoid(.)): the same number, without underflow at large margins.

    >>> round(float(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0]))), 4)   # log 2
    0.6931
    """
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} must match")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO: -log sigma(beta * [(log pi_c - log ref_c) - (log pi_r - log ref_r)]), averaged over pairs.

    Returns (loss, chosen_rewards, rejected_rewards); the implicit reward of a response is
    beta * log(pi / ref), so the loss is Bradley-Terry on implicit rewards.

    >>> z = torch.zeros(3)
    >>> round(float(dpo_loss(z, z, z, z)[0]), 4)   # policy = reference: log 2
    0.6931
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0; got {beta}")
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    return bradley_terry_loss(chosen, rejected), chosen.detach(), rejected.detach()


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantage: each reward minus its group's mean, divided by the group's std (+ eps).

    `rewards` holds `group_size` consecutive answers per prompt. The std is the unbiased one
    (n - 1), as TRL's `nanstd`; a group whose answers all score the same gets advantage 0: it
    carries no signal about which answer is better.

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), 3).round(decimals=2)
    tensor([ 1.1500, -0.5800, -0.5800,  0.0000,  0.0000,  0.0000])
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries; "
                         f"got shape {tuple(rewards.shape)}")
    g = rewards.view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (g.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi: exp(d) - d - 1 with d = log ref - log pi.

    Schulman's "k3" estimator: unbiased and never negative, unlike the plain log-ratio.

    >>> float(kl_k3(torch.tensor([-1.0]), torch.tensor([-1.0])))
    0.0
    """
    d = ref_logps - logps
    return torch.exp(d) - d - 1


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              ref_logps: torch.Tensor | None = None, beta: float = 0.0, epsilon_low: float = 0.2,
              epsilon_high: float = 0.2, kl_ratio_correction: bool = True) -> torch.Tensor:
    """GRPO's clipped objective, as TRL computes it for `loss_type="grpo"`.

    Per token: ratio = pi / pi_old, loss = -min(ratio * A, clip(ratio, 1-eps_lo, 1+eps_hi) * A)
    + beta * KL_k3(pi || ref); then the mean over each answer's tokens and the mean over answers.
    The answers were sampled from pi_old, so the KL estimate is weighted by the ratio pi / pi_old to
    be one of pi (`kl_ratio_correction`, TRL's `use_bias_correction_kl`, on by default in TRL 1.16).
    Shapes: (batch, T) for the log-probabilities and the mask, (batch,) for the advantages.

    >>> lp = torch.zeros(2, 3); mask = torch.ones(2, 3)
    >>> float(grpo_loss(lp, lp, torch.tensor([1.0, -1.0]), mask))   # ratio 1: -(1 - 1) / 2
    0.0
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if beta:
        if ref_logps is None:
            raise ValueError("beta > 0 needs ref_logps (the reference model's log-probabilities)")
        kl = kl_k3(logps, ref_logps)
        per_token = per_token + beta * (kl * ratio if kl_ratio_correction else kl)
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def kl_penalised_rewards(score: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:
    """InstructGPT's per-token reward: -kl_coef * (log pi - log ref) at every response token, plus the
    reward model's score at the last one. Shape (batch, T); 0 on masked positions.

    >>> kl_penalised_rewards(torch.tensor([1.0]), torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1, 1, 0]]), 0.1)
    tensor([[0., 1., 0.]])
    """
    r = -kl_coef * (logps - ref_logps) * mask
    last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & (mask > 0)  # the last response token
    return r + last * score[:, None]


def ppo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
             clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate with per-token advantages (batch, T), averaged over response tokens.

    >>> lp = torch.zeros(1, 2)
    >>> float(ppo_loss(lp + 1.0, lp, torch.ones(1, 2), torch.ones(1, 2)))   # ratio e > 1.2: clipped
    -1.2000000476837158
    """
    ratio = torch.exp(logps - old_logps)
    per_token = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4)
    (0.25, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)
