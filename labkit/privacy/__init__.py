"""Privacy and security tools for chapter 09: DP-SGD, leakage attacks, redaction, safe models.

Each defence in the chapter is measured against an attack; this package holds the reusable
pieces, one idea per module:

- `dp_sgd`: `per_sample_grads`, `dp_sgd_step` (clip each example's gradient, add Gaussian noise);
- `membership`: `roc_auc`, `loss_threshold_attack` (membership inference);
- `canaries`: `digit_canary_logprobs`, `exposure` (the "secret sharer" canary exposure),
  `PositionBatchedGPT` (labkit's GPT made ready for opacus);
- `pii`: PII redaction, `luhn_valid`, `cn_id_valid`, `find_pii`, `redact`, `span_scores`;
- `homomorphic`: homomorphic encryption, `ckks_context`, `encrypted_linear` (TenSEAL CKKS);
- `adversarial`: attacks on a deployed model, `greedy_char_attack`, `char_edits` and the held-out
  `heldout_char_edits`; the defence `normalize_text`;
- `integrity`: model integrity, `sha256_file`, `write_manifest`, `verify_manifest`,
  `encrypt_file`, `decrypt_file`;
- `access`: `ModelAPI`, an access-control, rate-limit and audit wrapper.

Everything is importable from `labkit.privacy` itself, as before the split.

    >>> luhn_valid("4111 1111 1111 1111"), cn_id_valid("11010519491231002X")
    (True, True)
"""
from .access import AccessDenied, ModelAPI, RateLimited
from .adversarial import char_edits, greedy_char_attack, heldout_char_edits, normalize_text
from .canaries import PositionBatchedGPT, digit_canary_logprobs, exposure
from .dp_sgd import clip_and_noise, dp_sgd_step, per_sample_grads
from .homomorphic import ckks_context, encrypted_linear
from .integrity import decrypt_file, encrypt_file, sha256_file, verify_manifest, write_manifest
from .membership import loss_threshold_attack, roc_auc
from .pii import PII_TYPES, PiiSpan, cn_id_valid, find_pii, luhn_valid, redact, span_scores

__all__ = [
    "per_sample_grads", "clip_and_noise", "dp_sgd_step", "roc_auc", "loss_threshold_attack",
    "PositionBatchedGPT", "digit_canary_logprobs", "exposure", "luhn_valid", "cn_id_valid",
    "PiiSpan", "find_pii", "redact", "span_scores", "ckks_context", "encrypted_linear",
    "normalize_text", "char_edits", "heldout_char_edits", "greedy_char_attack", "sha256_file", "write_manifest", "verify_manifest",
    "encrypt_file", "decrypt_file", "AccessDenied", "RateLimited", "ModelAPI", "PII_TYPES",
]
