"""Knowledge distillation: soft-label loss, a small student, a transfer set, the training loop."""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence

import torch
from torch import nn

from .errors import OptimizeError


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, temperature: float = 4.0,
                      alpha: float = 1.0) -> torch.Tensor:
    """Hinton et al. (2015): alpha T^2 KL(p_T^teacher || p_T^student) + (1 - alpha) CE(student, labels).

    The T^2 keeps the soft-label gradients the same size whatever the temperature. Labels of -1
    mark unlabelled rows (text only the teacher labelled): the hard-label term skips them.

    >>> z = torch.randn(4, 2); float(distillation_loss(z, z))
    0.0
    """
    if temperature <= 0:
        raise OptimizeError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise OptimizeError(f"alpha must be in [0, 1], got {alpha}")
    t = temperature
    soft = torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, -1),
                                      torch.log_softmax(teacher_logits / t, -1),
                                      reduction="batchmean", log_target=True) * t * t
    if alpha == 1 or labels is None:
        return soft
    known = labels >= 0  # rows labelled -1 are unlabelled transfer text: soft loss only
    if not bool(known.any()):
        return alpha * soft
    hard = torch.nn.functional.cross_entropy(student_logits[known], labels[known])
    return alpha * soft + (1 - alpha) * hard


def small_bert(teacher: nn.Module, hidden: int = 128, layers: int = 2, heads: int = 2,
               intermediate: int = 512, max_positions: int = 128, seed: int = 0):
    """A small BERT classifier with the teacher's tokenizer; its word embeddings start as the
    teacher's projected on their top `hidden` principal directions (so words that the teacher
    places close together start close together in the student).

    >>> student = small_bert(teacher, hidden=128, layers=2)        # doctest: +SKIP
    """
    from transformers import BertConfig, BertForSequenceClassification

    tc = teacher.config
    if hidden % heads:
        raise OptimizeError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    if hidden > tc.hidden_size:
        raise OptimizeError(f"the student's hidden size {hidden} exceeds the teacher's {tc.hidden_size}")
    cfg = BertConfig(vocab_size=tc.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate,
                     max_position_embeddings=max_positions, num_labels=tc.num_labels,
                     pad_token_id=tc.pad_token_id, type_vocab_size=tc.type_vocab_size)
    torch.manual_seed(seed)
    student = BertForSequenceClassification(cfg)
    emb = teacher.get_input_embeddings().weight.detach().float()
    centred = emb - emb.mean(0)
    _, _, vh = torch.linalg.svd(centred[torch.randperm(len(centred), generator=torch.Generator().manual_seed(seed))[:8000]],
                                full_matrices=False)
    proj = centred @ vh[:hidden].T
    with torch.no_grad():
        student.get_input_embeddings().weight.copy_(proj / proj.std() * 0.05 * math.sqrt(hidden / 128))
    return student


def augment(texts: Sequence[str], n_per_text: int = 4, p_mask: float = 0.1, p_drop: float = 0.1,
            mask_token: str = "[MASK]", seed: int = 0) -> list[str]:
    """Noisy copies of each text for a distillation transfer set (Tang et al., 2019): each word
    is masked with probability p_mask or dropped with probability p_drop, and with probability
    0.25 only a random span of the sentence is kept. The teacher labels them (soft labels).

    >>> augment(["a fine and moving film"], n_per_text=2, seed=1)       # doctest: +SKIP
    ['a fine and [MASK] film', 'fine and moving']
    """
    if n_per_text < 0 or not 0 <= p_mask < 1 or not 0 <= p_drop < 1:
        raise OptimizeError("need n_per_text >= 0 and probabilities in [0, 1)")
    rng = random.Random(seed)
    out = []
    for t in texts:
        words = t.split()
        for _ in range(n_per_text):
            w = words
            if len(w) > 4 and rng.random() < 0.25:
                n = rng.randint(max(2, len(w) // 3), len(w))
                i = rng.randint(0, len(w) - n)
                w = w[i:i + n]
            new = []
            for x in w:
                r = rng.random()
                if r < p_mask:
                    new.append(mask_token)
                elif r < p_mask + p_drop:
                    continue
                else:
                    new.append(x)
            out.append(" ".join(new) if new else t)
    return out


def train_student(student: nn.Module, tokenizer, texts: Sequence[str], labels: Sequence[int] | None = None,
                  teacher_logits: torch.Tensor | None = None, temperature: float = 4.0, alpha: float = 1.0,
                  epochs: int = 10, lr: float = 1e-3, batch_size: int = 32, max_length: int = 64,
                  seed: int = 0, progress: bool = True,
                  on_epoch: Callable[[int, nn.Module], None] | None = None) -> list[float]:
    """Train `student` on hard labels (teacher_logits None) or on the teacher's soft labels.

    Both use the same loop, data order and optimizer, so the only difference is the target.
    With teacher_logits, `labels` may hold -1 for unlabelled texts (a transfer set): those rows
    get the soft-label loss only. `on_epoch(epoch, student)` runs after every epoch with the student
    in eval mode (score it on a validation split to choose the number of epochs); its time is not
    training time.

    >>> losses = train_student(student, tok, texts, labels, epochs=1)    # doctest: +SKIP
    """
    from ..train import fit, shuffled_batches

    texts = list(texts)
    if teacher_logits is None and labels is None:
        raise OptimizeError("train_student needs labels (hard targets) or teacher_logits (soft targets)")
    if teacher_logits is not None and len(teacher_logits) != len(texts):
        raise OptimizeError(f"{len(teacher_logits)} teacher logits for {len(texts)} texts")
    if labels is not None and len(labels) != len(texts):
        raise OptimizeError(f"{len(labels)} labels for {len(texts)} texts")
    y = None if labels is None else torch.tensor([int(v) for v in labels])
    if y is not None and teacher_logits is None and bool((y < 0).any()):
        raise OptimizeError("hard-label training needs a label for every text (found -1)")
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # Kept as calibrated (chapter 08's targets rest on it): decay on every parameter, not
    # labkit.train.param_groups' matrices only; moving means re-calibrating.
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)

    def batches():
        for idx in shuffled_batches(len(texts), batch_size, epochs, g):
            mask = enc["attention_mask"][idx]
            n = int(mask.sum(1).max())  # trim the padding columns no row of this batch uses
            yield idx, enc["input_ids"][idx, :n], mask[:, :n]

    def loss_fn(model, batch):
        idx, ids, mask = batch
        logits = model(input_ids=ids, attention_mask=mask).logits
        idx = idx.cpu()  # the targets stay where they were given; their rows follow the logits
        hard = None if y is None else y[idx].to(logits.device)
        if teacher_logits is None:
            return torch.nn.functional.cross_entropy(logits, hard)
        return distillation_loss(logits, teacher_logits[idx].to(logits.device), hard, temperature, alpha)

    per_epoch = math.ceil(len(texts) / batch_size)

    def after_step(step, _history):
        if on_epoch is not None and step % per_epoch == 0:
            student.eval()
            with torch.no_grad():
                on_epoch(step // per_epoch, student)
            student.train()

    # Warm-up then cosine decay to 0 and clipping at 1, as in chapter 07; on the student's device.
    return fit(student, batches(), loss_fn, steps=epochs * per_epoch, lr=lr, warmup=0.1,
               min_lr_ratio=0.0, clip=1.0, optimizer=opt, device=next(student.parameters()).device,
               mixed_precision=False, progress=progress, desc="student", on_step=after_step).train_loss
