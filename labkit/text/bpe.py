"""Byte-level byte-pair encoding: `train_bpe` (the same merges as Hugging Face `tokenizers`'
`BpeTrainer` with a `ByteLevel` pre-tokenizer), `ByteBPE.encode` / `ByteBPE.decode`.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (space -> 'Ġ', newline -> 'Ċ').

    Printable Latin-1 bytes map to themselves; the others are moved to 256+ so that every byte is
    a visible character and a byte string can be handled as text.

    >>> m = bytes_to_unicode(); m[ord("a")], m[ord(" ")], m[ord("\\n")], len(m)
    ('a', 'Ġ', 'Ċ', 256)
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# GPT-2's pre-tokenization pattern, as used by `tokenizers.pre_tokenizers.ByteLevel(use_regex=True)`:
# contractions, letters with an optional leading space, digits, other symbols, and white space.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def _gpt2_regex():
    import regex  # the `regex` module knows \p{L}; the standard `re` does not

    return regex.compile(GPT2_PATTERN)


def byte_level_pretokenize(text: str) -> list[str]:
    """Split text into GPT-2 pre-tokens and write each one's UTF-8 bytes as characters.

    Equal to `tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)`.

    >>> byte_level_pretokenize("Hello world, 你好")
    ['Hello', 'Ġworld', ',', 'Ġä½łå¥½']
    """
    return ["".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8"))
            for piece in _gpt2_regex().findall(text)]


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[tuple[tuple[int, int], int]]:
    """Merge every non-overlapping (a, b) in `word` in place, left to right; return the pair-count
    changes (-1 for pairs that disappear, +1 for the new ones), exactly as `tokenizers` does."""
    changes = []
    i = 0
    while i < len(word):
        if word[i] == a and i + 1 < len(word) and word[i + 1] == b:
            if i > 0:
                changes.append(((word[i - 1], a), -1))
                changes.append(((word[i - 1], new), 1))
            word[i:i + 2] = [new]
            if i < len(word) - 1:
                changes.append(((b, word[i + 1]), -1))
                changes.append(((new, word[i + 1]), 1))
        i += 1
    return changes


@dataclass
class ByteBPE:
    """A trained byte-level BPE: the vocabulary (token -> id) and the ranked merges.

    >>> bpe = train_bpe(["low lower lowest"] * 3, vocab_size=260)
    >>> bpe.decode(bpe.encode("lowest low")) == "lowest low"
    True
    """
    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    ranks: dict[tuple[str, str], int] = field(init=False, repr=False)
    id_to_token: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ranks = {}
        for i, pair in enumerate(self.merges):
            self.ranks.setdefault(pair, i)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._cache: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.vocab)

    def _bpe(self, piece: str) -> list[str]:
        """Apply merges to one pre-token: repeatedly merge the adjacent pair with the lowest rank."""
        if piece in self._cache:
            return self._cache[piece]
        parts = list(piece)
        while len(parts) > 1:
            rank, pair = min((self.ranks.get(p, float("inf")), p) for p in zip(parts, parts[1:]))
            if rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) < 100_000:
            self._cache[piece] = parts
        return parts

    def tokenize(self, text: str) -> list[str]:
        """The token strings of `text` (byte-level characters, 'Ġ' is a space)."""
        return [t for piece in byte_level_pretokenize(text) for t in self._bpe(piece)]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`. Every byte is in the vocabulary, so nothing is ever unknown."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        return [self.vocab[t] for t in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text from token ids: concatenate the tokens, map characters back to bytes, decode UTF-8."""
        try:
            chars = "".join(self.id_to_token[int(i)] for i in ids)
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is not in the vocabulary (size {len(self)})") from None
        return bytes(CHAR_TO_BYTE[c] for c in chars).decode("utf-8", errors="replace")


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 0,
              pretokenize: Callable[[str], list[str]] = byte_level_pretokenize,
              initial_alphabet: Iterable[str] | None = None, progress: bool = False) -> ByteBPE:
    """Train byte-pair encoding merges the way `tokenizers.trainers.BpeTrainer` does.

    The alphabet (the 256 byte characters plus any other character seen) gets ids in code-point
    order; then the most frequent adjacent pair is merged until the vocabulary has `vocab_size`
    tokens or no pair occurs `min_frequency` times. Ties between equally frequent pairs go to the
    pair with the smaller (left id, right id), the rule of `tokenizers`' `Merge` ordering.

    >>> train_bpe(["aaab aab ab"], vocab_size=258).merges   # (a, a) and (a, b) tie at 3: smaller ids win
    [('a', 'a'), ('a', 'b')]
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if min_frequency < 0:
        raise ValueError(f"min_frequency must be >= 0, got {min_frequency}")
    if isinstance(texts, str):
        raise TypeError("train_bpe takes an iterable of texts; wrap a single text in [...]")
    word_counts = Counter(w for t in texts for w in pretokenize(t))
    alphabet = set(BYTE_TO_CHAR.values()) if initial_alphabet is None else set(initial_alphabet)
    alphabet |= {c for w in word_counts for c in w}
    id_to_token = sorted(alphabet)  # code-point order, as `tokenizers` sorts its alphabet
    token_to_id = {t: i for i, t in enumerate(id_to_token)}

    words = [[token_to_id[c] for c in w] for w in word_counts]
    counts = list(word_counts.values())
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += counts[i]
            where[pair].add(i)

    # A max-heap of (count, pair) with lazy updates: an entry whose count went stale is pushed back
    # with the current count. heapq is a min-heap, hence -count; on equal counts the smaller pair
    # wins. The sequence number only keeps entries comparable and never decides anything real.
    seq = 0
    heap: list[tuple[int, tuple[int, int], int, set[int]]] = []
    for pair, pos in where.items():
        if pair_counts[pair] > 0:
            heap.append((-pair_counts[pair], pair, seq, pos))
            seq += 1
    heapq.heapify(heap)
    where = defaultdict(set)

    merges: list[tuple[int, int]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(vocab_size - len(token_to_id), 0), desc="BPE merges")
    while len(token_to_id) < vocab_size and heap:
        neg, pair, _, pos = heapq.heappop(heap)
        if -neg != pair_counts[pair]:
            heapq.heappush(heap, (-pair_counts[pair], pair, seq, pos))
            seq += 1
            continue
        if -neg < 1 or min_frequency > -neg:
            break
        a, b = pair
        new_token = id_to_token[a] + id_to_token[b]
        new_id = token_to_id.get(new_token)
        if new_id is None:  # the same string can arise from two different pairs
            new_id = len(id_to_token)
            id_to_token.append(new_token)
            token_to_id[new_token] = new_id
            if bar is not None:
                bar.update(1)
        merges.append(pair)
        for i in pos:
            for p, change in _merge_word(words[i], a, b, new_id):
                pair_counts[p] += change * counts[i]
                if change > 0:
                    where[p].add(i)
        for p, ps in where.items():
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p, seq, ps))
                seq += 1
        where = defaultdict(set)
    if bar is not None:
        bar.close()
    return ByteBPE(vocab=token_to_id, merges=[(id_to_token[a], id_to_token[b]) for a, b in merges])
