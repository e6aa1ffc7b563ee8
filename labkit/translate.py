"""Machine translation: parallel data, a shared BPE, an encoder-decoder Transformer, decoding, scores.

- data: `numbers_dates_pairs` (numbers and dates written out in English, Chinese, French, German,
  Spanish with `num2words`, `babel` and `zh_number`), `load_bible_pairs` (verse-aligned World
  English Bible / Reina-Valera 1909 read with `pysword`; None, with a plain message, when the
  SWORD modules are absent), `split_by_group` (train/test without shared groups);
- tokens: `train_shared_bpe` (one byte-level BPE for both languages, Hugging Face `tokenizers`),
  `encode_pairs`, `batches` (length-bucketed, padded);
- model: `Seq2SeqTransformer`, built from chapter 05's `EncoderBlock` / `DecoderBlock` and checked
  against `torch.nn.Transformer` (`load_torch_transformer`);
- training: `label_smoothed_cross_entropy` (equal to `F.cross_entropy(label_smoothing=...)`),
  `train_seq2seq` (teacher forcing; works for this model and a Hugging Face encoder-decoder);
- decoding: `greedy_decode`, `beam_search` (checked against `transformers`' `generate`),
  `cross_attention`;
- scores: `corpus_bleu` written out (equal to `sacrebleu`), `sacre_bleu`, `chrf`, `exact_match`;
- prompting: `llm_translate`, zero- or few-shot translation with a chat LLM.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import DecoderBlock, EncoderBlock, padding_mask, sinusoidal_encoding

__all__ = [
    "LANG_NAMES", "zh_number", "number_words", "date_text", "numbers_dates_pairs", "split_by_group",
    "SWORD_DIR", "load_bible_pairs", "train_shared_bpe", "encode_pairs", "batches",
    "Seq2SeqConfig", "Seq2SeqTransformer", "label_smoothed_cross_entropy", "train_seq2seq",
    "greedy_decode", "beam_search", "translate", "cross_attention", "corpus_bleu", "sacre_bleu",
    "chrf", "exact_match", "llm_translate",
]

LANG_NAMES = {"en": "English", "zh": "Chinese", "fr": "French", "de": "German", "es": "Spanish"}
PAD, BOS, EOS = "<pad>", "<s>", "</s>"


# ----------------------------------------------------------------------------------------------
# Numbers and dates in five languages
# ----------------------------------------------------------------------------------------------

_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int) -> str:
    """An integer 0 <= n < 10^8 in Chinese numerals (num2words has no Chinese).

    A gap of zeros inside the number is read as one 零; 10-19 start with 十, not 一十.

    >>> zh_number(1005), zh_number(115), zh_number(10010), zh_number(15)
    ('一千零五', '一百一十五', '一万零一十', '十五')
    """
    if not isinstance(n, int) or not 0 <= n < 10**8:
        raise ValueError(f"zh_number takes an int in [0, 10^8); got {n!r}")
    if n == 0:
        return "零"

    def below_10k(m: int) -> str:
        out, gap = "", False
        for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
            d = m // unit_value % 10
            if d == 0:
                gap = gap or bool(out)  # a zero after a non-zero digit is read only if more follows
            else:
                out += ("零" if gap else "") + _ZH_DIGITS[d] + unit
                gap = False
        return out

    high, low = divmod(n, 10_000)
    s = below_10k(high) + "万" if high else ""
    if low:
        s += ("零" if high and low < 1000 else "") + below_10k(low)
    return s[1:] if s.startswith("一十") else s


def number_words(n: int, lang: str) -> str:
    """`n` written in words in one of LANG_NAMES' languages.

    >>> number_words(97, "fr"), number_words(21, "zh")
    ('quatre-vingt-dix-sept', '二十一')
    """
    if lang not in LANG_NAMES:
        raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANG_NAMES)}")
    if lang == "zh":
        return zh_number(n)
    from num2words import num2words

    return num2words(n, lang=lang)


def date_text(d: _dt.date, lang: str) -> str:
    """A date in the language's long written form (CLDR data through `babel`).

    >>> date_text(_dt.date(2021, 3, 5), "de"), date_text(_dt.date(2021, 3, 5), "zh")
    ('5. März 2021', '2021年3月5日')
    """
    if lang not in LANG_NAMES:
        raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANG_NAMES)}")
    from babel.dates import format_date

    return format_date(d, format="long", locale=lang)


def numbers_dates_pairs(n_numbers: int = 3000, n_dates: int = 1500, targets: Sequence[str] = ("zh", "fr", "de", "es"),
                        max_number: int = 9999, years: tuple[int, int] = (1900, 2099),
                        seed: int = 0) -> list[dict[str, Any]]:
    """English -> `targets` pairs: `n_numbers` distinct integers and `n_dates` distinct dates, each
    translated into every target language. The source starts with a tag `<2xx>` naming the target.

    Every pair has a `key` (the number or date): split with `split_by_group(pairs, "key")` so that
    no test value is seen in training, in any language.

    >>> p = numbers_dates_pairs(2, 1, targets=("fr",)); sorted(p[0])
    ['key', 'kind', 'lang', 'src', 'tgt']
    """
    bad = [t for t in targets if t not in LANG_NAMES or t == "en"]
    if bad or not targets:
        raise ValueError(f"targets must be languages among {', '.join(l for l in LANG_NAMES if l != 'en')}; got {list(targets)}")
    if n_numbers > max_number + 1:
        raise ValueError(f"n_numbers={n_numbers} distinct numbers do not fit in 0..{max_number}")
    rng = random.Random(seed)
    numbers = rng.sample(range(max_number + 1), n_numbers)
    first, last = _dt.date(years[0], 1, 1), _dt.date(years[1], 12, 31)
    days = rng.sample(range((last - first).days + 1), n_dates)
    pairs = []
    for n in numbers:
        en = number_words(n, "en")
        pairs += [{"src": f"<2{t}> {en}", "tgt": number_words(n, t), "lang": t, "kind": "number", "key": f"n{n}"}
                  for t in targets]
    for k in days:
        d = first + _dt.timedelta(days=k)
        en = date_text(d, "en")
        pairs += [{"src": f"<2{t}> {en}", "tgt": date_text(d, t), "lang": t, "kind": "date", "key": f"d{d}"}
                  for t in targets]
    return pairs


def split_by_group(items: Sequence[dict], key: str | Callable[[dict], Any], test_fraction: float = 0.1,
                   seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split items into train and test so that no group (value of `key`) is in both.

    Random splits of translation pairs leak: the same number in another language, or the next verse
    of the same chapter, would let the test measure memory rather than translation.

    >>> tr, te = split_by_group([{"g": i % 5} for i in range(50)], "g", 0.2)
    >>> {x["g"] for x in tr} & {x["g"] for x in te}
    set()
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    get = key if callable(key) else (lambda x: x[key])
    groups = sorted({get(x) for x in items}, key=str)
    random.Random(seed).shuffle(groups)
    test_groups = set(groups[:max(1, round(len(groups) * test_fraction))])
    train = [x for x in items if get(x) not in test_groups]
    test = [x for x in items if get(x) in test_groups]
    return train, test


# ----------------------------------------------------------------------------------------------
# The verse-aligned Bible (SWORD modules)
# ----------------------------------------------------------------------------------------------

SWORD_DIR = os.environ.get("SWORD_PATH", "/usr/share/sword")
_NOTE = re.compile(r"<(note|title)\b.*?</\1>", re.S)  # footnotes and headings are not translation
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _osis_text(raw: str) -> str:
    # pysword's own cleaner deletes a note without leaving a space ("only born<note/>Son" ->
    # "only bornSon"), so the markup is stripped here: notes become a space, other tags nothing.
    return _SPACE.sub(" ", _TAG.sub("", _NOTE.sub(" ", raw))).strip()


def _bible_verses(modules, name: str) -> dict[tuple[str, int, int], str]:
    import functools

    bible = modules.get_bible_from_module(name)
    # pysword decompresses a whole book's block for every verse it reads; remembering the last few
    # blocks makes reading a Bible ~20x faster (seconds, not minutes).
    bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    verses = {}
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            refs = [(book.osis_name, c + 1, v + 1) for c, n in enumerate(book.chapter_lengths) for v in range(n)]
            for ref, raw in zip(refs, bible.get_iter(books=[book.osis_name], clean=False)):
                text = _osis_text(raw)
                if text:
                    verses[ref] = text
    return verses


def load_bible_pairs(sword_dir: str | Path | None = None, src_module: str = "engWEB2015eb",
                     tgt_module: str = "spaRV1909eb", max_words: int | None = None,
                     verbose: bool = True) -> list[dict[str, Any]] | None:
    """Verse-aligned pairs from two SWORD Bible modules, or None (with a message) if they are absent.

    Defaults: World English Bible (2015) -> Reina-Valera 1909, both public domain, Debian packages
    `sword-text-web` and `sword-text-sparv`. Verses are matched by reference (book, chapter, verse);
    `max_words` keeps pairs whose both sides have at most that many words.

    >>> pairs = load_bible_pairs()                       # doctest: +SKIP
    >>> pairs[0]["ref"], pairs[0]["src"][:24], pairs[0]["tgt"][:24]  # doctest: +SKIP
    """
    folder = Path(sword_dir if sword_dir is not None else SWORD_DIR)
    missing = [m for m in (src_module, tgt_module) if not (folder / "mods.d" / f"{m.lower()}.conf").exists()
               and not (folder / "mods.d" / f"{m}.conf").exists()]
    if missing:
        if verbose:
            print(f"The SWORD Bible modules {', '.join(missing)} are not installed under {folder}, so the "
                  "Bible corpus is skipped and this chapter uses the numbers-and-dates task only. To add it "
                  "on Debian/Ubuntu: `sudo apt-get install sword-text-web sword-text-sparv` (`make` does "
                  "this where apt is available), or point SWORD_PATH at a folder holding the modules.")
        return None
    from pysword.modules import SwordModules

    modules = SwordModules(str(folder))
    modules.parse_modules()
    src, tgt = _bible_verses(modules, src_module), _bible_verses(modules, tgt_module)
    pairs = []
    for ref in src.keys() & tgt.keys():
        s, t = src[ref], tgt[ref]
        if max_words is not None and max(len(s.split()), len(t.split())) > max_words:
            continue
        pairs.append({"ref": f"{ref[0]} {ref[1]}:{ref[2]}", "book": ref[0], "chapter": ref[1], "src": s, "tgt": t})
    pairs.sort(key=lambda p: (p["book"], p["chapter"], int(p["ref"].rsplit(":", 1)[1])))
    return pairs


# ----------------------------------------------------------------------------------------------
# One BPE for both languages
# ----------------------------------------------------------------------------------------------

def train_shared_bpe(texts: Iterable[str], vocab_size: int, extra_special: Sequence[str] = ()):
    """A byte-level BPE (`tokenizers`) trained on source and target text together.

    Ids 0, 1, 2 are `<pad>`, `<s>`, `</s>`; `extra_special` (e.g. language tags `<2fr>`) follow and
    are never split. A shared vocabulary lets numbers, names and cognates keep one id on both sides.

    >>> tok = train_shared_bpe(["one two", "un deux"], 300)
    >>> tok.decode(tok.encode("un two").ids)
    'un two'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(texts, str):
        raise TypeError("train_shared_bpe takes an iterable of texts; wrap a single text in [...]")
    special = [PAD, BOS, EOS, *extra_special]
    if vocab_size < 256 + len(special):
        raise ValueError(f"vocab_size must be at least 256 bytes + {len(special)} special tokens; got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def encode_pairs(tokenizer, pairs: Sequence[dict], max_len: int = 128) -> list[tuple[list[int], list[int]]]:
    """(source ids + `</s>`, `<s>` + target ids + `</s>`) for each pair, cut to `max_len` tokens.

    >>> tok = train_shared_bpe(["a b"], 262); encode_pairs(tok, [{"src": "a", "tgt": "b"}])[0][1][0]
    1
    """
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    if bos is None or eos is None:
        raise ValueError("the tokenizer has no <s> / </s>; train it with train_shared_bpe")
    srcs = tokenizer.encode_batch([p["src"] for p in pairs])
    tgts = tokenizer.encode_batch([p["tgt"] for p in pairs])
    return [(s.ids[:max_len - 1] + [eos], [bos] + t.ids[:max_len - 2] + [eos]) for s, t in zip(srcs, tgts)]


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    n = max(len(r) for r in rows)
    return torch.tensor([list(r) + [pad_id] * (n - len(r)) for r in rows], dtype=torch.long)


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, shuffle: bool = True,
            generator: random.Random | None = None, pad_id: int = 0,
            device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, ...]]:
    """Padded batches (src, src_mask, tgt_in, labels) for teacher forcing, one pass over the data.

    `tgt_in` is the target without its last token, `labels` without its first (`<s>`): position i
    sees the gold tokens before i and is trained to predict token i. Padding labels are -100.
    Pairs of similar length are batched together (less padding, faster).

    >>> s, m, ti, y = next(batches([([5, 2], [1, 7, 2])], 1)); ti.tolist(), y.tolist()
    ([[1, 7]], [[7, 2]])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = list(range(len(encoded)))
    rng = generator or random.Random(0)
    if shuffle:
        rng.shuffle(order)
    chunk = batch_size * 50
    groups = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
        groups += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(groups)
    for g in groups:
        src = _pad([encoded[i][0] for i in g], pad_id)
        tgt = _pad([encoded[i][1] for i in g], pad_id)
        labels = tgt[:, 1:].masked_fill(tgt[:, 1:] == pad_id, -100)
        yield src.to(device), (src != pad_id).long().to(device), tgt[:, :-1].to(device), labels.to(device)


# ----------------------------------------------------------------------------------------------
# The encoder-decoder Transformer
# ----------------------------------------------------------------------------------------------

@dataclass
class Seq2SeqConfig:
    """Size of a `Seq2SeqTransformer`. Pre-LN blocks (`norm_first`) train stably without tuning."""
    vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.1
    max_len: int = 256
    pad_id: int = 0
    norm_first: bool = True


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer ("Attention is all you need") from chapter 05's blocks.

    One embedding table is shared by the source, the target and the output layer (a shared BPE
    makes that possible). `forward(src, src_mask, tgt_in)` returns logits (batch, Lt, vocab).

    >>> m = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=50, d_model=16, n_heads=2, d_ff=32))
    >>> m(torch.tensor([[5, 6, 2]]), torch.ones(1, 3), torch.tensor([[1, 7]])).shape
    torch.Size([1, 2, 50])
    """

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_id)
        self.register_buffer("pos", sinusoidal_encoding(cfg.max_len, d), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(d, cfg.n_heads, cfg.d_ff, cfg.dropout, norm_first=cfg.norm_first)
                                     for _ in range(cfg.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(d, cfg.n_heads, cfg.d_ff, cfg.dropout, norm_first=cfg.norm_first)
                                     for _ in range(cfg.n_decoder_layers))
        # Final norms as in nn.Transformer: with pre-LN blocks the residual stream is never normalised otherwise.
        self.enc_norm, self.dec_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied: the output layer scores tokens by their embeddings
        nn.init.normal_(self.embed.weight, std=d ** -0.5)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_len={self.cfg.max_len}")
        # sqrt(d) scaling keeps token embeddings (std d^-1/2) on the scale of the positional code.
        return self.drop(self.embed(ids) * math.sqrt(self.cfg.d_model) + self.pos[:ids.shape[1]])

    def encode_embedded(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        m = padding_mask(src_mask)
        for block in self.encoder:
            x = block(x, mask=m)
        return self.enc_norm(x)

    def decode_embedded(self, y: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
                        need_weights: bool = False):
        m, cross = padding_mask(src_mask), []
        for block in self.decoder:
            if need_weights:
                y, ws = block(y, memory, memory_mask=m, is_causal=True, need_weights=True)
                cross.append(ws["cross"])
            else:
                y = block(y, memory, memory_mask=m, is_causal=True)
        y = self.dec_norm(y)
        return (y, cross) if need_weights else y

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Memory (batch, Ls, d): one vector per source token, seen by every decoder layer."""
        return self.encode_embedded(self.embed_tokens(src), src_mask)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, need_weights: bool = False):
        """Logits (batch, Lt, vocab), or (logits, [cross-attention weights per layer])."""
        out = self.decode_embedded(self.embed_tokens(tgt_in), memory, src_mask, need_weights)
        if need_weights:
            return self.lm_head(out[0]), out[1]
        return self.lm_head(out)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, src_mask), src_mask)

    def load_torch_transformer(self, t: nn.Transformer) -> "Seq2SeqTransformer":
        """Copy a batch_first `nn.Transformer`'s weights into this model's blocks and final norms
        (then `decode_embedded(encode_embedded(x), ...)` equals `t(x, y, ...)`)."""
        if len(t.encoder.layers) != len(self.encoder) or len(t.decoder.layers) != len(self.decoder):
            raise ValueError("nn.Transformer and this model have different numbers of layers")
        self.encoder = nn.ModuleList(EncoderBlock.from_torch(layer) for layer in t.encoder.layers)
        self.decoder = nn.ModuleList(DecoderBlock.from_torch(layer) for layer in t.decoder.layers)
        self.enc_norm.load_state_dict(t.encoder.norm.state_dict())
        self.dec_norm.load_state_dict(t.decoder.norm.state_dict())
        return self


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1,
                                 ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy against (1 - eps) one-hot + eps uniform: loss = (1-eps) NLL + eps mean_v(-log p_v).

    Equal to `F.cross_entropy(..., label_smoothing=eps)`; the model is never pushed to infinite
    confidence, which helps beam search and BLEU.

    >>> z, y = torch.randn(4, 10), torch.tensor([1, 2, -100, 3])
    >>> torch.allclose(label_smoothed_cross_entropy(z, y, 0.1), F.cross_entropy(z, y, label_smoothing=0.1))
    True
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1); got {smoothing}")
    logp = logits.reshape(-1, logits.shape[-1]).float().log_softmax(-1)
    y = targets.reshape(-1)
    keep = y != ignore_index
    logp, y = logp[keep], y[keep]
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    return ((1 - smoothing) * nll + smoothing * -logp.mean(-1)).mean()


def _forward_fn(model) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    if isinstance(model, Seq2SeqTransformer):
        return model
    if hasattr(model, "get_encoder"):  # a Hugging Face encoder-decoder (Marian, T5, BART, ...)
        return lambda s, m, t: model(input_ids=s, attention_mask=m, decoder_input_ids=t).logits
    raise TypeError(f"expected a Seq2SeqTransformer or a Hugging Face encoder-decoder; got {type(model).__name__}")


def train_seq2seq(model, encoded: Sequence[tuple[list[int], list[int]]], steps: int, batch_size: int = 64,
                  lr: float = 1e-3, warmup: float = 0.05, label_smoothing: float = 0.1, weight_decay: float = 0.01,
                  seed: int = 0, pad_id: int = 0, device: str | torch.device = "cpu",
                  progress: bool = True, desc: str = "train") -> list[float]:
    """Teacher-forced training with label smoothing, AdamW, warm-up + cosine decay, clipping at 1.

    Works for `Seq2SeqTransformer` and for Hugging Face encoder-decoders (same batches, same loss).
    Returns the loss of every step.

    >>> losses = train_seq2seq(model, encode_pairs(tok, train_pairs), steps=500)   # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from .train import lr_at

    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if not encoded:
        raise ValueError("no training pairs")
    fwd = _forward_fn(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    rng = random.Random(seed)
    model.train()
    losses: list[float] = []
    data = iter(())
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        batch = next(data, None)
        if batch is None:  # a new epoch
            data = batches(encoded, batch_size, generator=rng, pad_id=pad_id, device=device)
            batch = next(data)
        src, src_mask, tgt_in, labels = batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step / steps, lr, warmup)
        loss = label_smoothed_cross_entropy(fwd(src, src_mask, tgt_in), labels, label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------

class _Steps:
    """encode once, then next-token logits for a batch of prefixes: the two calls decoding needs."""

    def __init__(self, model):
        self.model = model
        self.hf = not isinstance(model, Seq2SeqTransformer)
        _forward_fn(model)  # validates the type

    def encode(self, src, src_mask):
        if self.hf:
            return self.model.get_encoder()(input_ids=src, attention_mask=src_mask).last_hidden_state
        return self.model.encode(src, src_mask)

    def next_logits(self, memory, src_mask, prefix):
        # The prefix is re-run every step (no key/value cache): simple, and cheap for short sentences.
        if self.hf:
            from transformers.modeling_outputs import BaseModelOutput

            return self.model(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=src_mask,
                              decoder_input_ids=prefix).logits[:, -1].float()
        return self.model.decode(prefix, memory, src_mask)[:, -1].float()


def _as_batch(src: Sequence[Sequence[int]] | torch.Tensor, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(src, torch.Tensor):
        src = src[None] if src.dim() == 1 else src
    else:
        if not src or isinstance(src[0], int):
            raise TypeError("src must be a list of token-id lists (one per sentence) or a tensor")
        src = _pad(src, pad_id)
    src = src.to(device)
    return src, (src != pad_id).long()


@torch.no_grad()
def greedy_decode(model, src: Sequence[Sequence[int]] | torch.Tensor, bos_id: int = 1, eos_id: int = 2,
                  pad_id: int = 0, max_len: int = 64) -> list[list[int]]:
    """Pick the most probable next token until `</s>`: a batch of sentences at once.

    Returns each output's token ids without `<s>` and `</s>`.

    >>> greedy_decode(model, [[12, 40, 2]])                          # doctest: +SKIP
    [[57, 9]]
    """
    model.eval()
    device = next(model.parameters()).device
    src, src_mask = _as_batch(src, pad_id, device)
    steps = _Steps(model)
    memory = steps.encode(src, src_mask)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = steps.next_logits(memory, src_mask, ys).argmax(-1)
        nxt = nxt.masked_fill(done, pad_id)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if done.all():
            break
    out = []
    for row in ys[:, 1:].tolist():
        out.append(row[:row.index(eos_id)] if eos_id in row else row)
    return out


@torch.no_grad()
def beam_search(model, src: Sequence[int] | torch.Tensor, num_beams: int = 4, bos_id: int = 1, eos_id: int = 2,
                pad_id: int = 0, max_len: int = 64, length_penalty: float = 1.0) -> list[int]:
    """Keep the `num_beams` best partial translations by total log-probability; return the best finished one.

    A finished hypothesis y scores log p(y|x) / |y|^length_penalty (|y| counts `</s>`), so long
    outputs are not punished just for having more factors < 1. Semantics of `transformers`'
    `generate(num_beams=k, early_stopping=True)`: each step ranks 2k candidates; a `</s>` candidate
    ranked in the top k is set aside as finished; search stops once k are finished.

    >>> beam_search(model, [12, 40, 2], num_beams=4)                 # doctest: +SKIP
    [57, 9]
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1; got {num_beams}")
    model.eval()
    device = next(model.parameters()).device
    src_t = torch.as_tensor(src, dtype=torch.long)
    if src_t.dim() != 1:
        raise ValueError("beam_search translates one sentence: give a 1-D list of token ids")
    src_b, mask_b = _as_batch(src_t, pad_id, device)
    steps = _Steps(model)
    memory = steps.encode(src_b, mask_b)
    beams: list[tuple[float, list[int]]] = [(0.0, [bos_id])]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(max_len):
        prefix = torch.tensor([seq for _, seq in beams], device=device)
        n = len(beams)
        logp = steps.next_logits(memory.expand(n, -1, -1), mask_b.expand(n, -1), prefix).log_softmax(-1)
        total = torch.tensor([s for s, _ in beams], device=device)[:, None] + logp
        scores, idx = total.flatten().topk(min(2 * num_beams, total.numel()))
        new: list[tuple[float, list[int]]] = []
        for rank, (score, i) in enumerate(zip(scores.tolist(), idx.tolist())):
            b, tok = divmod(i, logp.shape[-1])
            seq = beams[b][1]
            if tok == eos_id:
                if rank < num_beams:  # only an end that is competitive counts as a finished hypothesis
                    finished.append((score / (len(seq) ** length_penalty), seq[1:]))
            else:
                new.append((score, seq + [tok]))
            if len(new) == num_beams:
                break
        if len(finished) >= num_beams:
            break
        beams = new
    else:  # out of length: unfinished beams compete too
        finished += [(s / ((len(seq) - 1) ** length_penalty), seq[1:]) for s, seq in beams]
    return max(finished, key=lambda f: f[0])[1]


def translate(model, tokenizer, texts: Sequence[str], num_beams: int = 1, max_len: int = 64,
              batch_size: int = 64, progress: bool = False) -> list[str]:
    """Texts in, translations out: greedy (`num_beams=1`, batched) or beam search.

    >>> translate(model, tok, ["<2fr> twenty-one"])                  # doctest: +SKIP
    ['vingt et un']
    """
    from tqdm.auto import tqdm

    if isinstance(texts, str):
        raise TypeError("translate takes a list of texts; wrap a single text in [...]")
    bos, eos, pad = (tokenizer.token_to_id(t) for t in (BOS, EOS, PAD))
    ids = [e.ids + [eos] for e in tokenizer.encode_batch(list(texts))]
    out: list[list[int]] = []
    if num_beams == 1:
        for b in tqdm(range(0, len(ids), batch_size), desc="greedy", disable=not progress):
            out += greedy_decode(model, ids[b:b + batch_size], bos, eos, pad, max_len)
    else:
        for s in tqdm(ids, desc=f"beam {num_beams}", disable=not progress):
            out.append(beam_search(model, s, num_beams, bos, eos, pad, max_len))
    return [tokenizer.decode(o).strip() for o in out]


@torch.no_grad()
def cross_attention(model: Seq2SeqTransformer, src_ids: Sequence[int], tgt_ids: Sequence[int],
                    layer: int = -1) -> torch.Tensor:
    """Cross-attention weights (len(tgt_ids), len(src_ids)) of one decoder layer, mean over heads:
    row i says where in the source the decoder looked while predicting target token i.

    >>> cross_attention(model, [12, 40, 2], [1, 57, 9]).shape         # doctest: +SKIP
    torch.Size([3, 3])
    """
    if not isinstance(model, Seq2SeqTransformer):
        raise TypeError("cross_attention reads the weights of a Seq2SeqTransformer")
    model.eval()
    device = next(model.parameters()).device
    src = torch.tensor([list(src_ids)], device=device)
    mask = torch.ones_like(src)
    _, cross = model.decode(torch.tensor([list(tgt_ids)], device=device), model.encode(src, mask), mask,
                            need_weights=True)
    return cross[layer][0].mean(0).cpu()


# ----------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------

def _tokenizer(tokenize: str) -> Callable[[str], str]:
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize).tokenizer


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a",
                max_order: int = 4) -> float:
    """Corpus BLEU (0-100) written out: BP * exp(mean_n log p_n), as sacrebleu computes it.

    p_n = clipped n-gram matches / hypothesis n-grams, summed over the corpus; BP = exp(1 - r/c)
    when the c hypothesis tokens are fewer than the r reference tokens. A zero p_n is replaced by
    1 / (2^k * total_n) for the k-th such order (sacrebleu's default 'exp' smoothing).

    >>> round(corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
    """
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    tok = _tokenizer(tokenize)
    correct, total = [0] * max_order, [0] * max_order
    sys_len = ref_len = 0
    for h, r in zip(hypotheses, references):
        hw, rw = tok(h.strip()).split(), tok(r.strip()).split()
        sys_len, ref_len = sys_len + len(hw), ref_len + len(rw)
        for n in range(1, max_order + 1):
            hc = Counter(tuple(hw[i:i + n]) for i in range(len(hw) - n + 1))
            rc = Counter(tuple(rw[i:i + n]) for i in range(len(rw) - n + 1))
            correct[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())  # clipped by the reference count
            total[n - 1] += max(len(hw) - n + 1, 0)
    if not any(correct):
        return 0.0
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    log_p, smooth = 0.0, 1.0
    for c, t in zip(correct, total):
        if t == 0:
            return 0.0
        if c == 0:
            smooth *= 2
            p = 1 / (smooth * t)
        else:
            p = c / t
        log_p += math.log(p)
    return 100 * bp * math.exp(log_p / max_order)


def sacre_bleu(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> float:
    """sacrebleu's corpus BLEU (one reference per sentence); use tokenize='zh' for Chinese.

    >>> round(sacre_bleu(["a b c d"], ["a b c d"]), 6)
    100.0
    """
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's chrF (character n-gram F-score, 0-100): credit for partly right words.

    >>> chrf(["vingt et un"], ["vingt et un"])
    100.0
    """
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of outputs equal to the reference (white space normalised).

    >>> exact_match(["vingt et un", "deux"], ["vingt  et un", "trois"])
    0.5
    """
    hypotheses, references = list(hypotheses), list(references)  # also accepts pandas Series
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references (> 0); got {len(hypotheses)} and {len(references)}")
    norm = lambda s: " ".join(s.split())  # noqa: E731
    return sum(norm(h) == norm(r) for h, r in zip(hypotheses, references)) / len(references)


# ----------------------------------------------------------------------------------------------
# Translation by prompting a chat LLM
# ----------------------------------------------------------------------------------------------

def llm_translate(model, tokenizer, text: str, src_lang: str = "en", tgt_lang: str = "fr",
                  shots: Sequence[tuple[str, str]] = (), max_new_tokens: int = 48) -> str:
    """Ask a chat model for a translation; `shots` are (source, target) examples given as earlier turns.

    Zero-shot with no shots, few-shot with some. The first line of the answer is kept.

    >>> llm_translate(model, tok, "twenty-one", "en", "fr", shots=[("two", "deux")])   # doctest: +SKIP
    'vingt et un'
    """
    from .models import chat

    for lang in (src_lang, tgt_lang):
        if lang not in LANG_NAMES:
            raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANG_NAMES)}")
    ask = (f"Translate this {LANG_NAMES[src_lang]} text into {LANG_NAMES[tgt_lang]}. "
           "Answer with the translation only.\n{}")
    messages: list[dict[str, str]] = []
    for s, t in shots:
        messages += [{"role": "user", "content": ask.format(s)}, {"role": "assistant", "content": t}]
    messages.append({"role": "user", "content": ask.format(text)})
    answer = chat(model, tokenizer, messages, max_new_tokens=max_new_tokens)
    lines = [line for line in answer.splitlines() if line.strip()]
    return lines[0].strip().strip('"“”') if lines else ""
