"""Reinforcement learning at toy scale: the book's GPT learns to add, then is tuned by GRPO and PPO.

Problems are "ab+cd=" with two-digit, zero-padded operands (so every prompt has 6 characters and a
batch needs no padding); an answer is the sum's digits, optional "!" and a closing ";". The
"demonstrations" the GPT is first trained on (`corpus`) are noisy on purpose: a share of them
carry a wrong sum, so the trained model samples right and wrong answers and RL has something to fix.

- `ArithTokenizer`, `split_problems`, `corpus`, `pretrain`: the supervised (SFT) model;
- `sample`: answers drawn from the GPT, with the mask of the tokens up to the first ";";
- `correct_reward`, `bangs`: the verifiable reward and the length the biased labeller likes;
- `grpo_step`: one GRPO update (group advantages, clipped loss, KL to the reference);
- `GPTRewardModel`, `labeller_pairs`, `train_reward_model`: the InstructGPT reward model;
- `ppo_step`: one PPO update against the reward model, KL penalty folded into the reward.

    >>> tok = ArithTokenizer(); tok.decode(tok.encode("12+34=46;"))
    '12+34=46;'
"""
from __future__ import annotations

import copy
import random

import torch
from torch import nn

from .. import runtime
from ..gpt import GPT, GPTConfig
from .objectives import (bradley_terry_loss, group_advantages, grpo_loss, kl_penalised_rewards, ppo_loss,
                         token_logprobs)

__all__ = ["ArithTokenizer", "split_problems", "corpus", "pretrain", "sample", "correct_reward", "bangs",
           "grpo_step", "GPTRewardModel", "labeller_pairs", "train_reward_model", "ppo_step", "PROMPT_LEN"]

PROMPT_LEN = 6  # "ab+cd="
END = ";"


class ArithTokenizer:
    """Characters 0-9 + = ; ! as ids 0..13.

    >>> ArithTokenizer().encode("1+1=2;")
    [1, 10, 1, 11, 2, 12]
    """
    chars = "0123456789+=;!"

    def __init__(self):
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)
        self.end_id = self.stoi[END]

    def encode(self, text: str) -> list[int]:
        bad = sorted(set(text) - set(self.stoi))
        if bad:
            raise ValueError(f"characters {bad} are not in the arithmetic vocabulary {self.chars!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def split_problems(max_operand: int = 49, test_share: float = 0.2) -> dict[str, list[tuple[int, int]]]:
    """All pairs (a, b) with 0 <= a, b <= max_operand, split into train / test by a fixed rule.

    The split does not depend on the seed: (a, b) is a test problem when (7a + 3b) mod 10 is below
    10 * test_share, so the test problems are spread over the whole table.

    >>> s = split_problems(9); len(s["train"]), len(s["test"])
    (80, 20)
    """
    if not 1 <= max_operand <= 99:
        raise ValueError(f"max_operand must be in 1..99 (prompts have two digits); got {max_operand}")
    pairs = [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]
    is_test = [(7 * a + 3 * b) % 10 < round(10 * test_share) for a, b in pairs]
    return {"train": [p for p, t in zip(pairs, is_test) if not t], "test": [p for p, t in zip(pairs, is_test) if t]}


def prompt_text(a: int, b: int) -> str:
    """The prompt of problem (a, b), operands zero-padded to two digits.

    >>> prompt_text(3, 45)
    '03+45='
    """
    return f"{a:02d}+{b:02d}="


def corpus(problems: list[tuple[int, int]], n: int, noise: float, rng: random.Random,
           bang_share: float = 0.2) -> list[str]:
    """`n` demonstration lines; a `noise` share of them with a wrong sum, a `bang_share` with 1-3 "!".

    >>> corpus([(1, 2)], 1, 0.0, random.Random(0), bang_share=0.0)
    ['01+02=3;']
    """
    lines = []
    for _ in range(n):
        a, b = rng.choice(problems)
        s = a + b
        if rng.random() < noise:
            s = max(0, s + rng.choice([-1, 1]) * rng.randint(1, 10))
        tail = "!" * rng.randint(1, 3) if rng.random() < bang_share else ""
        lines.append(f"{prompt_text(a, b)}{s}{tail}{END}")
    return lines


def _pad_lines(lines: list[str], tok: ArithTokenizer, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(lines), length), tok.end_id, dtype=torch.long)
    targets = torch.full((len(lines), length), -1, dtype=torch.long)
    for i, line in enumerate(lines):
        e = tok.encode(line)[:length + 1]
        ids[i, :len(e)] = torch.tensor(e)
        targets[i, :len(e) - 1] = torch.tensor(e[1:])  # after the final ";" nothing is predicted
    return ids, targets


def pretrain(lines: list[str], steps: int, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
             config: GPTConfig | None = None, device: str | None = None, progress: bool = True) -> tuple[GPT, list[float]]:
    """Train a small GPT on the demonstration lines (next-character loss); returns (model, losses).

    >>> m, losses = pretrain(["01+02=3;"] * 8, steps=2, batch_size=4, progress=False); len(losses)
    2
    """
    from ..train import fit

    tok = ArithTokenizer()
    torch.manual_seed(seed)
    device = device or runtime.device()  # the book's one device rule
    cfg = config or GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=64)
    model = GPT(cfg).to(device)
    opt = model.configure_optimizer(weight_decay=0.0, lr=lr)
    # Linear decay to 10%: a short run still ends on a low loss.
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - 0.9 * step / max(1, steps))
    ids, targets = _pad_lines(lines, tok, cfg.block_size)
    g = torch.Generator().manual_seed(seed)

    def draws():
        while True:
            idx = torch.randint(len(lines), (batch_size,), generator=g)
            yield ids[idx], targets[idx]

    history = fit(model, draws(), lambda m, b: m(b[0], b[1])[1], steps=steps, optimizer=opt, scheduler=schedule,
                  clip=None, device=device, progress=progress, desc="pretrain")
    return model.eval(), history.train_loss


@torch.no_grad()
def sample(model: GPT, problems: list[tuple[int, int]], n: int = 1, max_new: int = 8, temperature: float = 1.0,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`n` answers per problem, sampled: (ids (B, 6 + max_new), completion mask, answer texts).

    The answers of one problem are consecutive (a GRPO group). The mask covers the answer's tokens
    up to and including the first ";"; what follows it is never scored.

    >>> m = GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=1, n_embd=8))
    >>> ids, mask, texts = sample(m, [(1, 2)], n=3, max_new=4); ids.shape, mask.shape, len(texts)
    (torch.Size([3, 10]), torch.Size([3, 10]), 3)
    """
    tok = ArithTokenizer()
    dev = next(model.parameters()).device
    prompts = torch.tensor([tok.encode(prompt_text(a, b)) for a, b in problems for _ in range(n)], device=dev)
    ids = model.generate(prompts, max_new, temperature=temperature, generator=generator) if temperature > 0 \
        else model.generate(prompts, max_new, temperature=0)
    new = ids[:, PROMPT_LEN:]
    ended = (new == tok.end_id).long()
    before_end = (ended.cumsum(1) - ended) == 0  # tokens up to and including the first ";"
    mask = torch.zeros_like(ids)
    mask[:, PROMPT_LEN:] = before_end.long()
    texts = [tok.decode(row[m]) for row, m in zip(new.cpu(), before_end.cpu())]
    return ids, mask, texts


def correct_reward(problems: list[tuple[int, int]], texts: list[str], n: int = 1) -> torch.Tensor:
    """1.0 when the digits before the first "!" or ";" are the sum and the answer ends with ";".

    >>> correct_reward([(1, 2)], ["3;", "3!!;", "4;"], n=3)
    tensor([1., 1., 0.])
    """
    out = []
    for i, t in enumerate(texts):
        a, b = problems[i // n]
        digits = t.split("!")[0].split(END)[0]
        out.append(float(t.endswith(END) and digits.isdigit() and int(digits) == a + b))
    return torch.tensor(out)


def bangs(texts: list[str]) -> torch.Tensor:
    """Number of "!" in each answer: the length the biased labeller rewards.

    >>> bangs(["3!!;", "3;"])
    tensor([2., 0.])
    """
    return torch.tensor([float(t.count("!")) for t in texts])


def _answer_logps(model, ids: torch.Tensor) -> torch.Tensor:
    return token_logprobs(model, ids)[:, PROMPT_LEN - 1:]  # positions that predict the answer's tokens


def grpo_step(policy: GPT, ref: GPT, optimizer, problems: list[tuple[int, int]], group_size: int = 8,
              beta: float = 0.04, epsilon: float = 0.2, iterations: int = 2, max_new: int = 8,
              generator: torch.Generator | None = None) -> dict[str, float]:
    """One GRPO round: sample a group per problem, score, normalise in the group, `iterations` updates.

    >>> p = GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=1, n_embd=8))
    >>> st = grpo_step(p, copy.deepcopy(p), torch.optim.Adam(p.parameters()), [(1, 2)], group_size=2)
    >>> sorted(st)
    ['kl', 'loss', 'reward']
    """
    ids, mask, texts = sample(policy, problems, n=group_size, max_new=max_new, generator=generator)
    rewards = correct_reward(problems, texts, n=group_size).to(ids.device)
    adv = group_advantages(rewards, group_size)
    mask = mask[:, PROMPT_LEN:].float()
    with torch.no_grad():
        old = _answer_logps(policy, ids)
        ref_lp = _answer_logps(ref, ids)
    for _ in range(iterations):  # the first pass has ratio 1; later passes are where clipping acts
        lp = _answer_logps(policy, ids)
        loss = grpo_loss(lp, old, adv, mask, ref_lp, beta=beta, epsilon_low=epsilon, epsilon_high=epsilon)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    kl = float((((old - ref_lp) * mask).sum(1)).mean())
    return {"loss": loss.item(), "reward": float(rewards.mean()), "kl": kl}


class GPTRewardModel(nn.Module):
    """A reward model as in InstructGPT: the SFT model's Transformer with a scalar head instead of the
    vocabulary, read at the answer's last token (its ";", or the last generated token).

    >>> rm = GPTRewardModel(GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=1, n_embd=8)))
    >>> rm(torch.zeros(3, 10, dtype=torch.long), torch.ones(3, 10)).shape
    torch.Size([3])
    """

    def __init__(self, sft: GPT):
        super().__init__()
        self.gpt = copy.deepcopy(sft)
        self.head = nn.Linear(sft.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.gpt._embed(ids)
        for block in self.gpt.transformer.h:
            x = block(x)
        h = self.gpt.transformer.ln_f(x)
        last = (mask * torch.arange(ids.shape[1], device=ids.device)).argmax(1)  # index of the last answer token
        return self.head(h[torch.arange(len(ids), device=ids.device), last]).squeeze(-1)


def labeller_pairs(problems: list[tuple[int, int]], n: int, bang_weight: float, rng: random.Random,
                   max_bangs: int = 6) -> list[tuple[str, str]]:
    """(chosen, rejected) full lines from a simulated labeller who values a correct sum at 1 and
    each "!" at `bang_weight`: a labeller with a taste for enthusiasm (ties are skipped).

    >>> chosen, rejected = labeller_pairs([(1, 2)], 1, 0.0, random.Random(0))[0]
    >>> chosen.split("!")[0].rstrip(";"), rejected.split("!")[0].rstrip(";") != "01+02=3"
    ('01+02=3', True)
    """
    out = []
    while len(out) < n:
        a, b = rng.choice(problems)
        lines, values = [], []
        for _ in range(2):
            right = rng.random() < 0.5
            s = a + b if right else max(0, a + b + rng.choice([-1, 1]) * rng.randint(1, 10))
            k = rng.randint(0, max_bangs)
            lines.append(f"{prompt_text(a, b)}{s}{'!' * k}{END}")
            values.append(float(s == a + b) + bang_weight * k)
        if values[0] != values[1]:
            out.append((lines[0], lines[1]) if values[0] > values[1] else (lines[1], lines[0]))
    return out


def _line_batch(lines: list[str], length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    tok = ArithTokenizer()
    ids = torch.full((len(lines), length), tok.end_id, dtype=torch.long)
    mask = torch.zeros(len(lines), length)
    for i, line in enumerate(lines):
        e = tok.encode(line)[:length]
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, PROMPT_LEN:len(e)] = 1
    return ids.to(device), mask.to(device)


def train_reward_model(rm: GPTRewardModel, pairs: list[tuple[str, str]], steps: int, batch_size: int = 64,
                       lr: float = 1e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """Bradley-Terry training of `rm` on (chosen, rejected) lines; returns the losses.

    >>> rm = GPTRewardModel(GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=1, n_embd=8)))
    >>> len(train_reward_model(rm, [("01+02=3;", "01+02=4;")], steps=2, progress=False))
    2
    """
    from ..train import fit

    dev = next(rm.parameters()).device
    length = rm.gpt.config.block_size
    chosen = _line_batch([c for c, _ in pairs], length, dev)
    rejected = _line_batch([r for _, r in pairs], length, dev)
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)

    def draws():
        while True:
            yield torch.randint(len(pairs), (batch_size,), generator=g).to(dev)

    def loss_fn(m, idx):
        return bradley_terry_loss(m(chosen[0][idx], chosen[1][idx]), m(rejected[0][idx], rejected[1][idx]))

    history = fit(rm, draws(), loss_fn, steps=steps, optimizer=opt, lr=lr, warmup=0.0, min_lr_ratio=1.0, clip=None,
                  device=dev, progress=progress, desc="reward model")
    return history.train_loss


@torch.no_grad()
def reward_accuracy(rm: GPTRewardModel, pairs: list[tuple[str, str]]) -> float:
    """Share of pairs where the reward model scores the chosen line higher.

    >>> rm = GPTRewardModel(GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=1, n_embd=8)))
    >>> reward_accuracy(rm, [("01+02=3;", "01+02=4;")])   # untrained head: a tie is not a win
    0.0
    """
    rm.eval()
    dev = next(rm.parameters()).device
    length = rm.gpt.config.block_size
    rc = rm(*_line_batch([c for c, _ in pairs], length, dev))
    rr = rm(*_line_batch([r for _, r in pairs], length, dev))
    return float((rc > rr).float().mean())


def ppo_step(policy: GPT, ref: GPT, rm: GPTRewardModel, optimizer, problems: list[tuple[int, int]],
             kl_coef: float, epochs: int = 2, clip: float = 0.2, max_new: int = 8,
             generator: torch.Generator | None = None) -> dict[str, float]:
    """One PPO round against the reward model with the KL penalty of InstructGPT.

    Per token reward: -kl_coef * (log pi - log ref), plus the reward model's score at the last token;
    the advantage of a token is its reward-to-go minus the batch mean at that position (a baseline
    instead of a learned value function), whitened; then `epochs` clipped updates.

    >>> p = GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=1, n_embd=8))
    >>> st = ppo_step(p, copy.deepcopy(p), GPTRewardModel(p), torch.optim.Adam(p.parameters()), [(1, 2)], 0.1)
    >>> sorted(st)
    ['bangs', 'correct', 'kl', 'length', 'score']
    """
    ids, mask, texts = sample(policy, problems, n=1, max_new=max_new, generator=generator)
    with torch.no_grad():
        score = rm(ids, mask.float())
        old = _answer_logps(policy, ids)
        ref_lp = _answer_logps(ref, ids)
    m = mask[:, PROMPT_LEN:].float()
    rewards = kl_penalised_rewards(score, old, ref_lp, m, kl_coef)
    returns = rewards.flip(1).cumsum(1).flip(1) * m  # reward-to-go, no discount
    baseline = returns.sum(0) / m.sum(0).clamp(min=1.0)
    adv = (returns - baseline) * m
    adv = (adv - adv[m.bool()].mean()) / (adv[m.bool()].std() + 1e-8) * m
    for _ in range(epochs):
        lp = _answer_logps(policy, ids)
        loss = ppo_loss(lp, old, adv, m, clip=clip)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    correct = correct_reward(problems, texts)
    return {"score": float(score.mean()), "correct": float(correct.mean()),
            "kl": float(((old - ref_lp) * m).sum(1).mean()), "bangs": float(bangs(texts).mean()),
            "length": float(m.sum(1).mean())}
