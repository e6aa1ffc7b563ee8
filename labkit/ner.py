"""Named-entity recognition (命名实体识别) on the People's Daily tags: spans, BIO, HMM, F1, reader files.

The bundled People's Daily corpus (January 1998, Peking University annotation) is word-segmented and
POS-tagged; three of its tags name entities: `nr` person, `ns` place, `nt` organisation. `sentences`
turns a tagged paragraph into character-level sentences with entity spans and BIO tags (a person's
surname and given name are separate `nr` words and are joined into one PER span). Chapter 16 trains
an HMM, a CRF and a character BERT on them; `entity_prf` scores predictions at the entity level (the
chapter checks it against `seqeval`), `read_ner_jsonl` validates a reader's own file, and the HMM
pieces (`hmm_counts`, `viterbi`) are reused by later chapters.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import data

TAG_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
TYPES = ("PER", "LOC", "ORG")
LABELS = ("O",) + tuple(f"{p}-{t}" for t in TYPES for p in "BI")  # fixed label order for every tagger
_ENDS = {"。", "！", "？", "；"}
Span = tuple[int, int, str]  # (start, end exclusive, type) in characters


class NerFileError(ValueError):
    """A reader's own NER file that cannot be used; the message names the line, the field and the fix."""


# --- spans and BIO --------------------------------------------------------------------------------

def word_spans(words: Sequence[str], tags: Sequence[str]) -> list[Span]:
    """Character spans of the entities in a tagged word sequence; consecutive `nr` words form one person.

    >>> word_spans(["江", "泽民", "在", "北京"], ["nr", "nr", "p", "ns"])
    [(0, 3, 'PER'), (4, 6, 'LOC')]
    """
    spans: list[Span] = []
    pos = 0
    prev_nr = False
    for w, t in zip(words, tags):
        typ = TAG_TYPES.get(t)
        if typ == "PER" and prev_nr:  # surname + given name are two nr words: one person
            s, _, _ = spans[-1]
            spans[-1] = (s, pos + len(w), "PER")
        elif typ:
            spans.append((pos, pos + len(w), typ))
        prev_nr = typ == "PER"
        pos += len(w)
    return spans


def bio(n: int, spans: Iterable[Span]) -> list[str]:
    """BIO tags (B- begins an entity, I- continues it, O outside) for a text of n characters.

    >>> bio(6, [(0, 3, "PER"), (4, 6, "LOC")])
    ['B-PER', 'I-PER', 'I-PER', 'O', 'B-LOC', 'I-LOC']
    """
    tags = ["O"] * n
    for s, e, t in spans:
        tags[s] = f"B-{t}"
        for i in range(s + 1, e):
            tags[i] = f"I-{t}"
    return tags


def bio_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans read back from BIO tags, the way `seqeval`'s default (non-strict) mode reads them:
    an I- tag whose type differs from the open entity, or that follows O, starts a new entity.

    >>> bio_spans(["B-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC"])
    [(0, 2, 'PER'), (3, 4, 'LOC'), (4, 5, 'ORG'), (5, 6, 'LOC')]
    """
    spans: list[Span] = []
    start, typ = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        p, _, t = tag.partition("-")
        if start is not None and (p != "I" or t != typ):
            spans.append((start, i, typ))
            start, typ = None, None
        if p == "B" or (p == "I" and start is None):
            start, typ = i, t
    return spans


def entities(text: str, tags: Sequence[str]) -> list[tuple[str, str]]:
    """(surface, type) pairs of the entities a BIO tagging marks in `text`.

    >>> entities("江泽民在北京", ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"])
    [('江泽民', 'PER'), ('北京', 'LOC')]
    """
    return [(text[s:e], t) for s, e, t in bio_spans(tags)]


def sentences(words: Sequence[str], tags: Sequence[str], max_chars: int = 120) -> list[dict[str, Any]]:
    """Cut one tagged paragraph into sentences (after 。！？；) of at most `max_chars` characters
    (longer ones at the last comma, else at a word boundary); each with text, BIO tags and spans.

    >>> s = sentences(["江", "泽民", "说", "。", "好", "。"], ["nr", "nr", "v", "w", "a", "w"])
    >>> [(x["text"], x["spans"]) for x in s]
    [('江泽民说。', [(0, 3, 'PER')]), ('好。', [])]
    """
    out, cur_w, cur_t = [], [], []

    def flush(ws, ts):
        if ws:
            text = "".join(ws)
            spans = word_spans(ws, ts)
            out.append({"text": text, "tags": bio(len(text), spans), "spans": spans})

    for w, t in zip(words, tags):
        cur_w.append(w)
        cur_t.append(t)
        if sum(map(len, cur_w)) > max_chars:
            commas = [i for i, x in enumerate(cur_w[:-1]) if x in ("，", "、", "：")]
            cut = commas[-1] + 1 if commas else len(cur_w) - 1
            cut = max(cut, 1)
            flush(cur_w[:cut], cur_t[:cut])
            cur_w, cur_t = cur_w[cut:], cur_t[cut:]
        if w in _ENDS:
            flush(cur_w, cur_t)
            cur_w, cur_t = [], []
    flush(cur_w, cur_t)
    return [s for s in out if len(s["text"]) <= max_chars]


def peoples_daily_sentences(max_chars: int = 120) -> list[dict[str, Any]]:
    """All People's Daily sentences with BIO tags, in corpus order, each with the index of its paragraph.

    >>> s = peoples_daily_sentences()                                # doctest: +SKIP
    >>> s[1]["text"], s[1]["spans"]                                  # doctest: +SKIP
    ('中共中央总书记、国家主席江泽民', [(0, 4, 'ORG'), (12, 15, 'PER')])
    """
    from . import data

    ds = data.load("peoples-daily")
    out = []
    for i, (ws, ts) in enumerate(zip(ds["words"], ds["tags"])):
        for s in sentences(ws, ts, max_chars):
            s["paragraph"] = i
            out.append(s)
    return out


# --- entity-level scores --------------------------------------------------------------------------

def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "support": n_gold}


def entity_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Entity-level precision, recall and F1 (exact span and type), per type and micro-averaged.

    >>> r = entity_prf([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    >>> round(r["micro"]["f1"], 3), r["PER"]["f1"], r["LOC"]["recall"]
    (0.5, 1.0, 0.0)
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sequences, pred {len(pred)}; give one prediction per sentence")
    tp: Counter = Counter()
    n_gold: Counter = Counter()
    n_pred: Counter = Counter()
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted")
        gs, ps = set(bio_spans(g)), set(bio_spans(p))
        for s in gs:
            n_gold[s[2]] += 1
        for s in ps:
            n_pred[s[2]] += 1
        for s in gs & ps:
            tp[s[2]] += 1
    types = sorted(set(n_gold) | set(n_pred))
    out = {t: _prf(tp[t], n_pred[t], n_gold[t]) for t in types}
    out["micro"] = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return out


def multiset_prf(gold: Sequence[Sequence[tuple[str, str]]], pred: Sequence[Sequence[tuple[str, str]]]) -> dict[str, float]:
    """Micro P/R/F1 over (surface, type) pairs matched as multisets per text (for files without offsets).

    >>> multiset_prf([[("北京", "LOC"), ("北京", "LOC")]], [[("北京", "LOC")]])["recall"]
    0.5
    """
    tp = n_g = n_p = 0
    for g, p in zip(gold, pred):
        cg, cp = Counter(map(tuple, g)), Counter(map(tuple, p))
        tp += sum((cg & cp).values())
        n_g += sum(cg.values())
        n_p += sum(cp.values())
    return _prf(tp, n_p, n_g)


# --- HMM pieces (estimation by counting; decoding in log space) ------------------------------------

def hmm_counts(sequences: Iterable[tuple[str, Sequence[str]]], states: Sequence[str] = LABELS,
               alpha: float = 0.1, min_count: int = 1) -> dict[str, Any]:
    """Maximum-likelihood HMM parameters with add-alpha smoothing, from (text, tags) pairs.

    Returns log start (S,), log transition (S, S), log emission (S, V) and the vocabulary (character ->
    column); characters seen fewer than `min_count` times share the unknown column `vocab["<unk>"]`.

    >>> m = hmm_counts([("北京", ["B-LOC", "I-LOC"])], states=["O", "B-LOC", "I-LOC"])
    >>> m["log_trans"].shape, sorted(m["vocab"])
    ((3, 3), ['<unk>', '京', '北'])
    """
    sequences = list(sequences)
    idx = {s: i for i, s in enumerate(states)}
    chars = Counter(c for text, _ in sequences for c in text)
    vocab = {"<unk>": 0}
    for c, n in sorted(chars.items()):
        if n >= min_count:
            vocab[c] = len(vocab)
    S, V = len(states), len(vocab)
    start, trans, emit = np.full(S, alpha), np.full((S, S), alpha), np.full((S, V), alpha)
    for text, tags in sequences:
        ids = [idx[t] for t in tags]
        start[ids[0]] += 1
        for a, b in zip(ids, ids[1:]):
            trans[a, b] += 1
        for c, s in zip(text, ids):
            emit[s, vocab.get(c, 0)] += 1
    return {"states": list(states), "vocab": vocab, "log_start": np.log(start / start.sum()),
            "log_trans": np.log(trans / trans.sum(1, keepdims=True)),
            "log_emit": np.log(emit / emit.sum(1, keepdims=True))}


def encode(model: dict[str, Any], text: str) -> np.ndarray:
    """Character ids of `text` in an HMM's vocabulary (unknown characters -> 0).

    >>> encode({"vocab": {"<unk>": 0, "北": 1}}, "北上").tolist()
    [1, 0]
    """
    return np.array([model["vocab"].get(c, 0) for c in text], dtype=np.int64)


def viterbi(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray,
            obs: Sequence[int]) -> tuple[list[int], float]:
    """The most likely state path of an HMM for observation ids `obs` and its log probability.

    Vectorised over states (chapter 16 writes the same recursion with loops and checks both).

    >>> lp = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    >>> viterbi(np.log([0.9, 0.1]), lp, lp, [0, 1, 1])[0]
    [0, 1, 1]
    """
    obs = list(obs)
    if not obs:
        return [], 0.0
    delta = log_start + log_emit[:, obs[0]]
    back = np.zeros((len(obs), len(log_start)), dtype=np.int64)
    for t in range(1, len(obs)):
        cand = delta[:, None] + log_trans  # cand[i, j]: best path ending in i, then i -> j
        back[t] = cand.argmax(0)
        delta = cand.max(0) + log_emit[:, obs[t]]
    path = [int(delta.argmax())]
    for t in range(len(obs) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1], float(delta.max())


def bio_constraints(labels: Sequence[str] = LABELS) -> tuple[np.ndarray, np.ndarray]:
    """Log start and transition scores that allow only valid BIO sequences: 0 where allowed, -inf where
    not (no I-X at the start, after O, or after a label of another type). With a tagger's per-character
    log-probabilities as emissions, `viterbi` then finds the best *valid* tagging.

    >>> ls, lt = bio_constraints(["O", "B-PER", "I-PER"])
    >>> ls.tolist(), lt[0].tolist()
    ([0.0, 0.0, -inf], [0.0, 0.0, -inf])
    """
    log_start = np.array([-np.inf if b.startswith("I-") else 0.0 for b in labels])
    log_trans = np.array([[-np.inf if b.startswith("I-") and a[2:] != b[2:] else 0.0 for b in labels] for a in labels])
    return log_start, log_trans


def hmm_tag(model: dict[str, Any], text: str) -> list[str]:
    """BIO tags of `text` from an HMM built by `hmm_counts` (Viterbi decoding).

    >>> m = hmm_counts([("北京好", ["B-LOC", "I-LOC", "O"])], states=["O", "B-LOC", "I-LOC"])
    >>> hmm_tag(m, "北京好")
    ['B-LOC', 'I-LOC', 'O']
    """
    path, _ = viterbi(model["log_start"], model["log_trans"], model["log_emit"], encode(model, text))
    return [model["states"][s] for s in path]


# --- CRF features ---------------------------------------------------------------------------------

def _kind(c: str) -> str:
    if c.isdigit() or c in "０１２３４５６７８９":
        return "digit"
    if "\u4e00" <= c <= "\u9fff":
        return "han"
    return "latin" if c.isalpha() else "punct"


def crf_features(text: str, window: int = 2) -> list[dict[str, Any]]:
    """Feature dicts per character for a linear-chain CRF: the characters around it, bigrams, kind.

    >>> f = crf_features("在北京")[1]
    >>> f["c0"], f["c-1"], f["c0c1"]
    ('北', '在', '北京')
    """
    n = len(text)
    pad = lambda i: text[i] if 0 <= i < n else ("<s>" if i < 0 else "</s>")  # noqa: E731
    feats = []
    for i in range(n):
        f: dict[str, Any] = {"bias": 1.0, "kind": _kind(text[i])}
        for d in range(-window, window + 1):
            f[f"c{d}"] = pad(i + d)
        f["c-1c0"], f["c0c1"] = pad(i - 1) + pad(i), pad(i) + pad(i + 1)
        f["c-2c-1"], f["c1c2"] = pad(i - 2) + pad(i - 1), pad(i + 1) + pad(i + 2)
        feats.append(f)
    return feats


# --- the reader's own file ------------------------------------------------------------------------

def read_ner_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Texts and gold entities from a JSON-lines file: `{"text": "...", "entities": [["王芳", "PER"], ...]}`.

    Types are PER, LOC, ORG; an entity listed twice occurs twice. A file that cannot be used raises
    `NerFileError` naming the line and what to change.

    >>> rows = read_ner_jsonl("my_ner.jsonl")                              # doctest: +SKIP
    >>> rows[0]                                                            # doctest: +SKIP
    {'text': '王芳在北京工作。', 'entities': [('王芳', 'PER'), ('北京', 'LOC')]}
    """
    p = Path(path).expanduser()
    where = f"ner_eval_jsonl: {p.name}"
    rows = []
    for i, obj in data.jsonl_objects(p, "ner_eval_jsonl", ("text", "entities"), NerFileError):
        text, ents = obj["text"], obj["entities"]
        if not isinstance(text, str) or not text.strip():
            raise NerFileError(f"{where}, line {i}: field 'text' must be a non-empty string")
        if not isinstance(ents, list):
            raise NerFileError(f"{where}, line {i}: field 'entities' must be a list of [surface, type] pairs, "
                               f"got {type(ents).__name__}")
        pairs = []
        for j, e in enumerate(ents):
            if not (isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)):
                raise NerFileError(f"{where}, line {i}: entity {j} must be a [surface, type] pair of strings, "
                                   f"got {e!r}")
            surface, typ = e
            if typ not in TYPES:
                raise NerFileError(f"{where}, line {i}: entity {j} has type {typ!r}; use one of {', '.join(TYPES)}")
            if not surface or surface not in text:
                raise NerFileError(f"{where}, line {i}: entity {j} {surface!r} does not occur in the text")
            pairs.append((surface, typ))
        rows.append({"text": text, "entities": pairs, "line": i})
    if not rows:
        raise NerFileError(f"{where} has no JSON lines; add at least one {{\"text\": ..., \"entities\": [...]}} line")
    return rows


# --- a character BERT for token classification ------------------------------------------------------

def encode_chars(tokenizer, texts: Sequence[str], tags: Sequence[Sequence[str]] | None = None,
                 max_length: int = 128) -> dict[str, Any]:
    """Tokenize texts character by character; label each character's token (special tokens get -100).

    Returns the padded batch (torch tensors) plus `word_ids`: for each row, the character behind each
    token (None for [CLS], [SEP], padding), so predictions map back to characters.

    >>> b = encode_chars(tok, ["北京"], [["B-LOC", "I-LOC"]])         # doctest: +SKIP
    >>> b["labels"].tolist()                                          # doctest: +SKIP
    [[-100, 1, 2, -100]]
    """
    import torch

    enc = tokenizer([list(t) for t in texts], is_split_into_words=True, truncation=True,
                    max_length=max_length, padding=True, return_tensors="pt")
    word_ids = [enc.word_ids(i) for i in range(len(texts))]
    batch = {k: enc[k] for k in ("input_ids", "attention_mask")}
    if tags is not None:
        lab = {t: i for i, t in enumerate(LABELS)}
        batch["labels"] = torch.tensor([[-100 if w is None else lab[tg[w]] for w in ws]
                                        for ws, tg in zip(word_ids, tags)])
    batch["word_ids"] = word_ids
    return batch


def train_token_classifier(model, tokenizer, texts: Sequence[str], tags: Sequence[Sequence[str]],
                           epochs: int = 2, lr: float = 1e-3, batch_size: int = 32, max_length: int = 128,
                           warmup: float = 0.1, seed: int = 0, progress: bool = True,
                           on_epoch: Callable[[int], Any] | None = None) -> list[float]:
    """Fine-tune a token classifier (cross-entropy per character, AdamW, linear warm-up and decay).

    Sentences are batched by length so little compute goes to padding; each epoch visits the batches
    in a new random order. The loop is `labkit.train.fit` with AdamW (weight decay 0.01 on every
    parameter), a linear warm-up over `warmup` of the steps then linear decay to 0, and clipping at 1.
    Returns the loss per step. `on_epoch(epoch)` (1, 2, ...) is called after each epoch with the
    model in eval mode, e.g. to score validation data and keep the best epoch's weights.

    >>> losses = train_token_classifier(model, tok, texts, tags, epochs=1)   # doctest: +SKIP
    """
    import torch

    from .train import fit

    if epochs < 1 or not texts:
        raise ValueError(f"train_token_classifier needs epochs >= 1 and at least one text; got epochs={epochs}, "
                         f"{len(texts)} texts")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    order = np.argsort([len(t) for t in texts], kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    total = epochs * len(batches)

    def encoded():  # one pass per epoch over the length-sorted batches, in a new order each time
        for _ in range(epochs):
            for b in rng.permutation(len(batches)):
                enc = encode_chars(tokenizer, [texts[i] for i in batches[b]], [tags[i] for i in batches[b]],
                                   max_length)
                enc.pop("word_ids")
                yield enc

    def after_step(step, _history):
        if on_epoch is not None and step % len(batches) == 0:
            model.eval()
            on_epoch(step // len(batches))
            model.train()

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n_warm = max(1, int(warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / n_warm if s < n_warm else max(0.0, (total - s) / max(1, total - n_warm)))
    return fit(model, encoded(), steps=total, optimizer=opt, scheduler=sched, clip=1.0, progress=progress,
               desc="token classifier", on_step=after_step).train_loss


def predict_logprobs(model, tokenizer, texts: Sequence[str], batch_size: int = 64,
                     max_length: int = 128) -> list[np.ndarray]:
    """Log-probabilities of the labels (columns in `LABELS` order) per character, one (len, 7) array per text.

    Characters past `max_length` tokens get label O with probability 1. Argmax per character gives
    `predict_tags`; a Viterbi decode over these rows (chapter 16) gives a valid BIO sequence instead.

    >>> predict_logprobs(model, tok, ["王芳"])[0].shape                  # doctest: +SKIP
    (2, 7)
    """
    import torch

    from . import runtime

    dev = runtime.device()
    out: list[np.ndarray] = [np.zeros((0, len(LABELS)))] * len(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = encode_chars(tokenizer, [texts[i] for i in idx], None, max_length)
        with torch.inference_mode(), runtime.autocast():
            logits = model(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev)).logits
        logp = torch.log_softmax(logits.float(), -1).cpu().numpy()
        for row, i in enumerate(idx):
            lp = np.full((len(texts[i]), len(LABELS)), -np.inf)
            lp[:, 0] = 0.0  # O, unless the model saw the character
            for j, w in enumerate(enc["word_ids"][row]):
                if w is not None:  # a character split into several tokens keeps its last token's scores
                    lp[w] = logp[row, j]
            out[i] = lp
    return out


def predict_tags(model, tokenizer, texts: Sequence[str], batch_size: int = 64,
                 max_length: int = 128) -> list[list[str]]:
    """BIO tags per character from a token classifier, the most likely label of each character on its own.

    >>> predict_tags(model, tok, ["王芳在北京工作。"])                    # doctest: +SKIP
    [['B-PER', 'I-PER', 'O', 'B-LOC', 'I-LOC', 'O', 'O', 'O']]
    """
    return [[LABELS[k] for k in lp.argmax(1)] for lp in predict_logprobs(model, tokenizer, texts, batch_size, max_length)]
