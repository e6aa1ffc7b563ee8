"""Attacks on language models and their defences (chapter 21), one idea per module.

- `injection`: prompt-injection attacks (direct and planted in retrieved documents), success judges,
  and defences: delimiting and marking, an instruction hierarchy, an injection classifier;
- `refusal`: a class of (benign stand-in) requests a model should refuse, jailbreak wrappers, a refusal
  judge and a small LoRA that teaches the refusal;
- `backdoor`: a trigger phrase planted in a share of a training set, attack success, and the
  spectral-signature detector;
- `watermark`: a green-list watermark in the decoding loop and its z-test detector;
- `redteam`: the attacks packaged as a suite that runs against any chat function or
  OpenAI-compatible URL.

Every harmful goal is a benign stand-in: reveal a made-up secret code, insert a made-up link, give
personal investment advice. The chapter measures mechanisms, not harmful content.
"""
