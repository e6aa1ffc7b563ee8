"""PII detection and redaction (数据脱敏): `luhn_valid`, `cn_id_valid`, `find_pii`, `redact`,
`span_scores`.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


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
