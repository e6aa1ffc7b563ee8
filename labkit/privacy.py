"""Privacy and security tools for chapter 09: DP-SGD, leakage attacks, redaction, safe models.

Each defence in the chapter is measured against an attack; this module holds the reusable pieces:

- DP-SGD: `per_sample_grads`, `dp_sgd_step` (clip each example's gradient, add Gaussian noise);
- leakage: `roc_auc`, `loss_threshold_attack` (membership inference), `digit_canary_logprobs`,
  `exposure` (the "secret sharer" canary exposure), `PositionBatchedGPT` (labkit's GPT made
  ready for opacus);
- PII redaction: `luhn_valid`, `cn_id_valid`, `find_pii`, `redact`, `span_scores`;
- homomorphic encryption: `ckks_context`, `encrypted_linear` (TenSEAL CKKS);
- attacks on a deployed model: `greedy_char_attack`, `normalize_text`;
- model integrity: `sha256_file`, `write_manifest`, `verify_manifest`, `encrypt_file`,
  `decrypt_file`, and `ModelAPI`, an access-control, rate-limit and audit wrapper.

    >>> luhn_valid("4111 1111 1111 1111"), cn_id_valid("11010519491231002X")
    (True, True)
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
import unicodedata
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .gpt import GPT

__all__ = [
    "per_sample_grads", "clip_and_noise", "dp_sgd_step", "roc_auc", "loss_threshold_attack",
    "PositionBatchedGPT", "digit_canary_logprobs", "exposure", "luhn_valid", "cn_id_valid",
    "PiiSpan", "find_pii", "redact", "span_scores", "ckks_context", "encrypted_linear",
    "normalize_text", "greedy_char_attack", "sha256_file", "write_manifest", "verify_manifest",
    "encrypt_file", "decrypt_file", "AccessDenied", "RateLimited", "ModelAPI", "PII_TYPES",
]


# ---------------------------------------------------------------------------------------------
# DP-SGD
# ---------------------------------------------------------------------------------------------
def per_sample_grads(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of the loss of each example separately: {name: (batch, *param.shape)}.

    >>> g = per_sample_grads(nn.Linear(3, 2), F.cross_entropy, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))
    >>> g["weight"].shape
    torch.Size([4, 2, 3])
    """
    if len(x) != len(y):
        raise ValueError(f"x and y need the same batch size; got {len(x)} and {len(y)}")
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        # A batch of one: the per-example loss is the loss of a one-example batch.
        out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, x, y)


def clip_and_noise(grads: dict[str, torch.Tensor], max_grad_norm: float, noise_multiplier: float,
                   expected_batch_size: int | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The DP-SGD gradient from per-example gradients: clip each to norm C, sum, add N(0, (sigma C)^2), average.

    The norm is taken over all parameters of one example together ("flat" clipping, as opacus).
    >>> g = {"w": torch.tensor([[3.0, 4.0], [0.3, 0.4]])}
    >>> clip_and_noise(g, 1.0, 0.0)["w"]
    tensor([0.4500, 0.6000])
    """
    if max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm must be > 0; got {max_grad_norm}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0; got {noise_multiplier}")
    b = next(iter(grads.values())).shape[0]
    norms = torch.stack([g.reshape(b, -1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)
    # Same factor as opacus: C / (norm + 1e-6), capped at 1, so a small gradient is left alone.
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    out = {}
    for k, g in grads.items():
        s = torch.einsum("b,b...->...", factor, g)
        noise = torch.normal(0.0, noise_multiplier * max_grad_norm, s.shape, generator=generator)
        # Divide by the *expected* batch size: with Poisson sampling the real size is itself private.
        out[k] = (s + noise) / (expected_batch_size or b)
    return out


def dp_sgd_step(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, lr: float,
                max_grad_norm: float, noise_multiplier: float, expected_batch_size: int | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One step of DP-SGD written out: per-example gradients, clipping, noise, plain SGD update.

    >>> m = nn.Linear(3, 2)
    >>> _ = dp_sgd_step(m, F.cross_entropy, torch.randn(8, 3), torch.randint(0, 2, (8,)), 0.1, 1.0, 1.0)
    """
    grads = clip_and_noise(per_sample_grads(model, loss_fn, x, y), max_grad_norm, noise_multiplier,
                           expected_batch_size, generator)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p -= lr * grads[name]
    return grads


# ---------------------------------------------------------------------------------------------
# Membership inference
# ---------------------------------------------------------------------------------------------
def roc_auc(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve (fpr, tpr) and its area for "positive has the higher score"; ties count one half.

    >>> roc_auc([0.9, 0.8], [0.1, 0.85])[2]
    0.75
    """
    pos, neg = np.asarray(scores_pos, float), np.asarray(scores_neg, float)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    # AUC = P(score_pos > score_neg) + 0.5 P(equal): the Mann-Whitney U statistic, from average ranks.
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    auc = (ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    thresholds = np.unique(allv)[::-1]
    tpr = np.r_[0.0, [(pos >= t).mean() for t in thresholds]]
    fpr = np.r_[0.0, [(neg >= t).mean() for t in thresholds]]
    return fpr, tpr, float(auc)


def loss_threshold_attack(member_losses: Sequence[float], nonmember_losses: Sequence[float]):
    """Membership inference by loss (Yeom et al. 2018): a low loss says "was in the training set".

    Returns (fpr, tpr, auc) over all thresholds. 0.5 is a coin toss; 1.0 tells members apart perfectly.
    >>> loss_threshold_attack([0.1, 0.2], [0.9, 1.5])[2]
    1.0
    """
    return roc_auc(-np.asarray(member_losses, float), -np.asarray(nonmember_losses, float))


# ---------------------------------------------------------------------------------------------
# Canaries in a language model
# ---------------------------------------------------------------------------------------------
class PositionBatchedGPT(GPT):
    """labkit's GPT with position ids given per example, so opacus can compute per-example gradients.

    opacus computes an embedding's per-example gradient from its input, which must carry the batch
    dimension; GPT looks positions up with a shared (length,) tensor. The output is identical.
    >>> from labkit.gpt import GPTConfig
    >>> m = PositionBatchedGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    """

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, length) token ids; got shape {tuple(idx.shape)}")
        b, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence of length {t} is longer than block_size={self.config.block_size}")
        pos = torch.arange(t, device=idx.device).unsqueeze(0).expand(b, t)
        return self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))


@torch.no_grad()
def digit_canary_logprobs(model: nn.Module, prefix_ids: Sequence[int], digit_ids: Sequence[int],
                          n_digits: int, batch_size: int = 1024) -> np.ndarray:
    """log p(d_1 ... d_n | prefix) for EVERY string of n digits, in numeric order (10**n values).

    One forward pass per (n-1)-digit prefix gives the last digit's distribution too, so the cost is
    10**(n-1) sequences, not 10**n. `model(idx)` must return logits first (labkit's GPT does).
    >>> # lp = digit_canary_logprobs(model, encode("my pin is "), encode("0123456789"), 4)
    """
    if len(digit_ids) != 10:
        raise ValueError(f"digit_ids must hold the ids of '0'..'9' (10 ids); got {len(digit_ids)}")
    if not 1 <= n_digits <= 7:
        raise ValueError(f"n_digits must be in 1..7 (10**n candidates are scored); got {n_digits}")
    was_training = model.training
    model.eval()
    digits = torch.tensor(list(digit_ids))
    prefix = torch.tensor(list(prefix_ids))
    m = n_digits - 1
    heads = torch.arange(10 ** m)
    # The digits of every head, most significant first.
    head_digits = torch.stack([(heads // 10 ** (m - 1 - j)) % 10 for j in range(m)], 1) if m else heads[:, None][:, :0]
    out = torch.empty(10 ** m, 10)
    for s in range(0, 10 ** m, batch_size):
        hd = head_digits[s:s + batch_size]
        idx = torch.cat([prefix.expand(len(hd), -1), digits[hd]], 1)
        logp = F.log_softmax(model(idx)[0].float(), dim=-1)
        p0 = len(prefix) - 1  # the logits at position i predict token i + 1
        lp_head = torch.zeros(len(hd))
        for j in range(m):
            lp_head += logp[torch.arange(len(hd)), p0 + j, digits[hd[:, j]]]
        out[s:s + len(hd)] = lp_head[:, None] + logp[:, p0 + m][:, digits]
    model.train(was_training)
    return out.reshape(-1).numpy()


def exposure(candidate_logprobs: np.ndarray, secret_index: int) -> tuple[int, float]:
    """Rank of the secret among all candidates (1 = most likely) and its exposure in bits.

    exposure = log2(#candidates) - log2(rank) (Carlini et al., "The Secret Sharer", 2019): 0 bits when
    the secret is the least likely candidate, log2(#candidates) when it is the most likely.
    >>> exposure(np.array([-3.0, -1.0, -2.0, -4.0]), 1)
    (1, 2.0)
    """
    lp = np.asarray(candidate_logprobs, float)
    if not 0 <= secret_index < len(lp):
        raise ValueError(f"secret_index {secret_index} outside 0..{len(lp) - 1}")
    # Ties are counted against the secret (rank = 1 + number of candidates at least as likely).
    rank = int((lp > lp[secret_index]).sum() + (lp == lp[secret_index]).sum())
    return rank, float(math.log2(len(lp)) - math.log2(rank))


# ---------------------------------------------------------------------------------------------
# PII detection and redaction (数据脱敏)
# ---------------------------------------------------------------------------------------------
PII_TYPES = ("NAME", "EMAIL", "PHONE", "ID", "CARD")

# The most common Chinese surnames (a public list; together they cover most of the population),
# plus compound surnames. A name is a surname followed by one or two given-name characters.
_ZH_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施"
    "文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷"
    "盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷"
    "晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝封钟")
_ZH_COMPOUND = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文")
# Characters that end a Chinese name: a given name rarely uses them, the text after a name often does.
_ZH_STOP = set("的是说在和与及给把被向从对电手邮身先女老同经总了也都就还又请您你我他她它们号码证卡账地址住用已")
_ZH_TITLES = ("先生", "女士", "小姐", "老师", "经理", "同学", "医生")
_EN_TITLE = r"(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?"
_EN_CUES = r"(?:[Nn]ame is|[Nn]ame:|[Cc]ontact|[Dd]ear|[Ss]igned|[Ff]rom|[Cc]all|[Aa]sk for|[Ee]mail|[Tt]o)"


@dataclass(frozen=True, order=True)
class PiiSpan:
    """One piece of personal data found in a text: [start, end) character offsets and its type."""
    start: int
    end: int
    type: str
    text: str = field(compare=False, default="")


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of payment card numbers (spaces and dashes ignored).

    >>> luhn_valid("4111-1111-1111-1111"), luhn_valid("4111111111111112")
    (True, False)
    """
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:  # every second digit from the right is doubled; 2-digit results are summed (== -9)
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(number: str) -> bool:
    """Checksum of a Chinese resident ID number (GB 11643, ISO 7064 MOD 11-2) and a plausible birth date.

    >>> cn_id_valid("11010519491231002X"), cn_id_valid("110105194912310021")
    (True, False)
    """
    s = number.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", s):
        return False
    year, month, day = int(s[6:10]), int(s[10:12]), int(s[12:14])
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    check = "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], _CN_ID_WEIGHTS)) % 11]
    return s[17] == check


_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("ID", re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")),  # Chinese resident ID
    ("ID", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")),  # US social security number
    ("CARD", re.compile(r"(?<![\d-])(?:\d{12,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5})(?![\d-])")),
    ("PHONE", re.compile(r"(?<![\d-])(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![\d-])")),  # CN mobile
    ("PHONE", re.compile(r"(?<![\d-])(?:0\d{2,3}-)\d{7,8}(?![\d-])")),  # CN landline with area code
    ("PHONE", re.compile(r"(?<![\w-])(?:\+?1[ .-]?|001[ .-])?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?:\s?x\d{1,5})?(?![\d-])")),
]
_EN_WORD = r"[A-Z][a-z]+(?:[A-Z][a-z]+|[-'][A-Z]?[a-z]+)?"
_EN_NAME = re.compile(rf"(?:{_EN_TITLE}\s+)?{_EN_WORD}(?:\s+(?:[A-Z]\.\s+)?{_EN_WORD})+"
                      r"(?:,?\s+(?:Jr\.|Sr\.|MD|DDS|PhD|DVM|IV|V|III|II|I)(?![\w]))?")
_ZH_BEFORE = set("，。；：:,;.!?！？ \n（(“\"'") | set("是叫为给由和与请找系户名人")


def _zh_names(text: str) -> list[PiiSpan]:
    spans, i = [], 0
    cjk = lambda c: "\u4e00" <= c <= "\u9fff"  # noqa: E731
    while i < len(text):
        sur = next((c for c in _ZH_COMPOUND if text.startswith(c, i)), None)
        if sur is None and text[i] in _ZH_SURNAMES:
            sur = text[i]
        # A surname starts a name only at a boundary (text start, punctuation) or after a cue such as
        # 叫 / 给 / 联系人: inside a word (付款, 王国) the same character is not a name.
        if sur and (i == 0 or text[i - 1] in _ZH_BEFORE):
            j = i + len(sur)
            n = 0
            while n < 2 and j + n < len(text) and cjk(text[j + n]) and text[j + n] not in _ZH_STOP:
                n += 1
            if n:
                spans.append(PiiSpan(i, j + n, "NAME", text[i:j + n]))
                i = j + n
                continue
        i += 1
    return spans


def find_pii(text: str, checksums: bool = True, names: bool = True) -> list[PiiSpan]:
    """Personal data in an English or Chinese text: names, e-mails, phones, ID and card numbers.

    Rules are regular expressions; with `checksums=True` a card number must pass Luhn and an 18-digit
    ID the GB 11643 checksum, which removes most random numbers (order ids, tracking numbers).
    >>> [s.type for s in find_pii("Contact Mary Smith at mary@example.com or 138 0013 8000.")]
    ['NAME', 'EMAIL', 'PHONE']
    """
    if not isinstance(text, str):
        raise TypeError(f"find_pii needs a str; got {type(text).__name__}")
    found: list[PiiSpan] = []
    taken = np.zeros(len(text) + 1, bool)

    def add(s: int, e: int, kind: str) -> None:
        if not taken[s:e].any():
            taken[s:e] = True
            found.append(PiiSpan(s, e, kind, text[s:e]))

    for kind, pat in _PATTERNS:
        for m in pat.finditer(text):
            if checksums and kind == "CARD" and not luhn_valid(m.group()):
                continue
            if checksums and kind == "ID" and len(m.group()) == 18 and not cn_id_valid(m.group()):
                continue
            add(m.start(), m.end(), kind)
    if names:
        for m in _EN_NAME.finditer(text):
            # Drop sentence-initial capitalised words that are not names ("Dear", "Contact", "Please").
            words = list(re.finditer(r"\S+", m.group()))
            k = 0
            while k < len(words) and words[k].group() in _COMMON_CAPS:
                k += 1
            if len(words) - k >= 2:
                start = m.start() + words[k].start()
                title = re.search(_EN_TITLE + r"\s+$", text[max(0, start - 8):start])
                add(start - len(title.group()) if title else start, m.end(), "NAME")
        for sp in _zh_names(text):
            add(sp.start, sp.end, "NAME")
    return sorted(found)


# Capitalised words that start sentences in ordinary text and are not names.
_COMMON_CAPS = set("The This That These Those Please Our Your Their His Her My We You They It If When Thank "
                   "Thanks Dear Hello Hi Contact Call Send Email Mail Order Customer Account Card Phone Reach "
                   "Name Best Kind Regards New Old Tracking Invoice Meeting Payment Ship Shipping Reply "
                   "Main Street Avenue Road Suite Apt Monday Tuesday Wednesday Thursday Friday Saturday "
                   "Sunday January February March July September October November "
                   "December Visa Mastercard American Express Discover Social Security Number".split())


def redact(text: str, spans: Iterable[PiiSpan] | None = None, style: str = "type") -> str:
    """Replace each span by a placeholder: "[NAME]" (style "type") or "*" characters (style "mask").

    >>> redact("Email mary@example.com now")
    'Email [EMAIL] now'
    """
    if style not in ("type", "mask"):
        raise ValueError(f"style must be 'type' or 'mask'; got {style!r}")
    spans = find_pii(text) if spans is None else sorted(spans)
    out, last = [], 0
    for s in spans:
        out.append(text[last:s.start])
        out.append(f"[{s.type}]" if style == "type" else "*" * (s.end - s.start))
        last = s.end
    out.append(text[last:])
    return "".join(out)


def span_scores(gold: Sequence[Sequence[PiiSpan]], pred: Sequence[Sequence[PiiSpan]]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per PII type and over all ("ALL"), exact span and type match.

    >>> g = [[PiiSpan(0, 4, "NAME")]]; span_scores(g, g)["ALL"]["f1"]
    1.0
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred must list the same texts; got {len(gold)} and {len(pred)}")
    tp, fp, fn = defaultdict(int), defaultdict(int), defaultdict(int)
    for g, p in zip(gold, pred):
        gs, ps = {(s.start, s.end, s.type) for s in g}, {(s.start, s.end, s.type) for s in p}
        for s in gs & ps:
            tp[s[2]] += 1
        for s in ps - gs:
            fp[s[2]] += 1
        for s in gs - ps:
            fn[s[2]] += 1
    out = {}
    for t in sorted(set(tp) | set(fp) | set(fn)) + ["ALL"]:
        a, b, c = (sum(d.values()) for d in (tp, fp, fn)) if t == "ALL" else (tp[t], fp[t], fn[t])
        prec = a / (a + b) if a + b else 1.0
        rec = a / (a + c) if a + c else 1.0
        out[t] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                  "support": a + c}
    return out


# ---------------------------------------------------------------------------------------------
# Homomorphic encryption (同态加密) with TenSEAL
# ---------------------------------------------------------------------------------------------
def ckks_context(poly_modulus_degree: int = 8192, coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
                 scale_bits: int = 40):
    """A TenSEAL CKKS context with Galois keys (needed for the rotations inside a dot product).

    >>> ctx = ckks_context()           # the client keeps this one: it holds the secret key
    >>> server_ctx = ctx.copy(); server_ctx.make_context_public()
    """
    import tenseal as ts

    if poly_modulus_degree not in (4096, 8192, 16384, 32768):
        raise ValueError(f"poly_modulus_degree must be a power of two in 4096..32768; got {poly_modulus_degree}")
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=poly_modulus_degree,
                     coeff_mod_bit_sizes=list(coeff_mod_bit_sizes))
    ctx.global_scale = 2 ** scale_bits
    ctx.generate_galois_keys()
    return ctx


def encrypted_linear(enc_x, weight: np.ndarray, bias: np.ndarray):
    """Server side: encrypted x -> encrypted logits x @ W^T + b, never seeing x (W, b in plaintext).

    `enc_x` is a TenSEAL CKKSVector; W is (classes, features). Returns one encrypted logit per class.
    >>> # enc = ts.ckks_vector(ctx, x); logits = [c.decrypt()[0] for c in encrypted_linear(enc, W, b)]
    """
    w = np.asarray(weight, float)
    if w.ndim != 2 or w.shape[1] != enc_x.size():
        raise ValueError(f"weight must be (classes, {enc_x.size()}); got shape {w.shape}")
    # One encrypted dot product per class: TenSEAL's vector-matrix product rotates once per input
    # feature, a dot product only log2(features) times, so this is many times faster for few classes.
    return [enc_x.dot(row.tolist()) + float(bb) for row, bb in zip(w, np.asarray(bias, float))]


# ---------------------------------------------------------------------------------------------
# Adversarial text
# ---------------------------------------------------------------------------------------------
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def normalize_text(text: str, drop_spaces: bool = True) -> str:
    """Undo cheap evasions: NFKC (full-width -> ASCII, compatibility forms), invisible characters, spaces.

    >>> normalize_text("ｂａｄ\u200b 书")
    'bad书'
    """
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    return re.sub(r"\s+", "", text) if drop_spaces else text


def _char_edits(text: str) -> list[str]:
    """Every single-edit variant: an invisible character or a space after a position, full-width ASCII."""
    out = []
    for i in range(1, len(text)):
        out.append(text[:i] + "\u200b" + text[i:])
        out.append(text[:i] + " " + text[i:])
    for i, c in enumerate(text):
        if "!" <= c <= "~":  # ASCII -> its full-width twin (U+FF01..U+FF5E), which looks the same
            out.append(text[:i] + chr(ord(c) + 0xFEE0) + text[i + 1:])
    return out


def greedy_char_attack(predict_proba: Callable[[list[str]], np.ndarray], text: str, label: int,
                       max_edits: int = 5, edits: Callable[[str], list[str]] = _char_edits) -> tuple[str, bool, int]:
    """Black-box greedy attack: apply, one at a time, the edit that most lowers p(true label).

    Returns (adversarial text, whether the prediction flipped, number of edits used).
    >>> # adv, flipped, n = greedy_char_attack(model_proba, "质量很好", 1, max_edits=3)
    """
    if max_edits < 1:
        raise ValueError(f"max_edits must be >= 1; got {max_edits}")
    cur = text
    for n in range(1, max_edits + 1):
        cands = edits(cur)
        if not cands:
            break
        p = predict_proba(cands)[:, label]
        cur = cands[int(p.argmin())]
        if p.min() < 0.5:
            return cur, True, n
    return cur, False, max_edits


# ---------------------------------------------------------------------------------------------
# Model integrity, encryption at rest, access control
# ---------------------------------------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints can be larger than memory).

    >>> # sha256_file("model.safetensors")
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(files: Iterable[str | Path], out: str | Path) -> dict[str, str]:
    """Write {file name: sha256} as JSON next to the files; publish it through a trusted channel.

    >>> # write_manifest(["model.safetensors"], "MANIFEST.json")
    """
    out = Path(out)
    manifest = {Path(f).name: sha256_file(f) for f in files}
    out.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_manifest(manifest: str | Path, folder: str | Path | None = None) -> dict[str, bool]:
    """Check each file listed in a manifest: {name: hash matches}. A missing file is False.

    >>> # all(verify_manifest("MANIFEST.json").values())
    """
    manifest = Path(manifest)
    folder = Path(folder) if folder else manifest.parent
    want = json.loads(manifest.read_text())
    return {name: (folder / name).is_file() and sha256_file(folder / name) == h for name, h in want.items()}


def encrypt_file(path: str | Path, key: bytes, out: str | Path | None = None) -> Path:
    """Encrypt a file at rest with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

    >>> # key = Fernet.generate_key(); encrypt_file("model.safetensors", key)
    """
    from cryptography.fernet import Fernet

    path = Path(path)
    out = Path(out) if out else path.with_suffix(path.suffix + ".enc")
    out.write_bytes(Fernet(key).encrypt(path.read_bytes()))
    return out


def decrypt_file(path: str | Path, key: bytes) -> bytes:
    """Decrypt a Fernet file; a wrong key or a changed byte raises cryptography's InvalidToken.

    >>> # data = decrypt_file("model.safetensors.enc", key)
    """
    from cryptography.fernet import Fernet

    return Fernet(key).decrypt(Path(path).read_bytes())


class AccessDenied(PermissionError):
    """The API key is unknown, or its role may not call this action."""


class RateLimited(RuntimeError):
    """The client sent more requests than its quota allows in the current window."""


class ModelAPI:
    """A model behind an API: keys with roles, a sliding-window rate limit, rounded outputs, an audit log.

    >>> api = ModelAPI(lambda texts: np.full((len(texts), 2), 0.5), keys={"k1": "user"}, max_requests=2, window_s=60)
    >>> api.predict("k1", ["hello"]).shape
    (1, 2)
    """

    ROLES = {"user": {"predict"}, "admin": {"predict", "audit"}}

    def __init__(self, predict_proba: Callable[[list[str]], np.ndarray], keys: dict[str, str],
                 max_requests: int | None = None, window_s: float = 3600.0, decimals: int | None = None,
                 labels_only: bool = False, clock: Callable[[], float] = time.monotonic):
        bad = {k: r for k, r in keys.items() if r not in self.ROLES}
        if bad:
            raise ValueError(f"unknown roles {bad}; valid roles: {', '.join(self.ROLES)}")
        if max_requests is not None and max_requests < 1:
            raise ValueError(f"max_requests must be >= 1 or None (no limit); got {max_requests}")
        self._predict, self.keys = predict_proba, dict(keys)
        self.max_requests, self.window_s, self.decimals, self.labels_only = max_requests, window_s, decimals, labels_only
        self.clock = clock
        self._seen: dict[str, deque] = defaultdict(deque)
        self.log: list[dict] = []

    def _authorise(self, key: str, action: str, n: int) -> None:
        role = self.keys.get(key)
        if role is None or action not in self.ROLES[role]:
            self.log.append({"t": self.clock(), "key": key[:4] + "...", "action": action, "ok": False, "why": "denied"})
            raise AccessDenied(f"key may not call {action!r}" if role else "unknown API key")
        if self.max_requests is not None and action == "predict":
            now, seen = self.clock(), self._seen[key]
            while seen and seen[0] <= now - self.window_s:  # forget requests older than the window
                seen.popleft()
            if len(seen) + n > self.max_requests:
                self.log.append({"t": now, "key": key[:4] + "...", "action": action, "ok": False, "why": "rate"})
                raise RateLimited(f"quota of {self.max_requests} texts per {self.window_s:g} s used up "
                                  f"({len(seen)} used, {n} asked)")
            seen.extend([now] * n)
        self.log.append({"t": self.clock(), "key": key[:4] + "...", "action": action, "ok": True, "n": n})

    def predict(self, key: str, texts: list[str]) -> np.ndarray:
        """Class probabilities (or one-hot labels, or rounded probabilities) for `texts`."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        self._authorise(key, "predict", len(texts))
        p = np.asarray(self._predict(list(texts)), float)
        if self.labels_only:
            return np.eye(p.shape[1])[p.argmax(1)]
        return p.round(self.decimals) if self.decimals is not None else p

    def audit(self, key: str) -> list[dict]:
        """The audit log (admins only)."""
        self._authorise(key, "audit", 0)
        return list(self.log)
