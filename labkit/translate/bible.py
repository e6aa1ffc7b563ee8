"""The verse-aligned Bible: the World English Bible and the Reina-Valera 1909 read from SWORD
modules with `pysword` (None, with a plain message, when the modules are absent).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any


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
