"""The book's evaluation harness (评测框架): one way of scoring a language model on a task.

- `tasks`: tasks built from the bundled data with fixed, documented splits (`load_task`);
- `scoring`: multiple choice by log-likelihood with sum / per-token / per-character normalisation
  (`score_mc`), generated answers scored by SQuAD exact match and F1 (`score_answers`);
- `stats`: bootstrap intervals, paired tests, sample sizes, Cohen's kappa, calibration (ECE);
- `contamination`: n-gram overlap of test items with training text.

Chapter 18 writes each idea by hand and checks it against lm-evaluation-harness, scipy and
scikit-learn; other chapters call these functions.

>>> from labkit import harness
>>> t = harness.load_task("arithmetic"); t.sizes()
{'train': 200, 'validation': 100, 'test': 200}
"""
from .contamination import ngrams, overlap, overlaps, training_ngrams
from .scoring import (NORMS, MCResult, encode_pair, generate_answers, loglikelihoods, next_token_logprobs,
                      score_answers, score_mc)
from .stats import (bootstrap_ci, bootstrap_means, cohen_kappa, ece, items_needed, paired_bootstrap,
                    permutation_test, reliability)
from .tasks import TASKS, Prompt, Task, load_task

__all__ = ["TASKS", "Task", "Prompt", "load_task", "NORMS", "MCResult", "encode_pair", "loglikelihoods", "next_token_logprobs",
           "score_mc", "score_answers", "generate_answers", "bootstrap_means", "bootstrap_ci", "paired_bootstrap",
           "permutation_test", "items_needed", "cohen_kappa", "reliability", "ece", "ngrams", "overlap",
           "overlaps", "training_ngrams"]
