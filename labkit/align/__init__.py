"""Alignment after instruction tuning (chapter 19): preference data, reward models, DPO, GRPO, PPO.

One idea per module:

- `labkit.align.preferences`: preference pairs from the bundled country facts, with a fixed split;
- `labkit.align.objectives`: the losses written out (sequence log-probabilities, Bradley-Terry, DPO,
  GRPO's group advantages and clipped loss, PPO with a KL penalty, pass@k);
- `labkit.align.arithmetic`: the book's GPT trained on sums, then tuned by GRPO and PPO (toy scale);
- `labkit.align.lm`: the same ideas on a Hugging Face chat model (SmolLM2): batches of
  (prompt, response) through the chat template, a reward model on the LM's features, LoRA DPO
  and GRPO steps.

    >>> from labkit.align import dpo_loss, group_advantages
"""
from .objectives import (bradley_terry_loss, dpo_loss, first_scored, group_advantages, grpo_loss, kl_k3,
                         kl_penalised_rewards, pass_at_k, ppo_loss, sequence_logprobs, token_logprobs)
from .preferences import build_pairs, capital_questions, is_correct

__all__ = ["bradley_terry_loss", "dpo_loss", "first_scored", "group_advantages", "grpo_loss", "kl_k3",
           "kl_penalised_rewards", "pass_at_k", "ppo_loss", "sequence_logprobs", "token_logprobs", "build_pairs",
           "capital_questions", "is_correct"]
