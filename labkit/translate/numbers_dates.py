"""Parallel data made on the spot: numbers and dates written out in English, Chinese, French,
German and Spanish (`num2words`, `babel`, and `zh_number` for Chinese numerals).
"""
from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Sequence
from typing import Any


LANG_NAMES = {"en": "English", "zh": "Chinese", "fr": "French", "de": "German", "es": "Spanish"}


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
