"""Models the book trains itself (chapter 06 teaches the recipes): built once, cached, found by name.

- `zh-char-bert`: a character-level Chinese BERT (3 layers, width 128) pretrained with masked-language
  modelling on the People's Daily (`labkit.train.build_zh_char_bert`). Chapters 07, 14 and 16
  fine-tune it. Each recipe setting has its own folder, so a smoke run (`steps=20`) never waits for,
  or overwrites, the cpu profile's 1,000-step model.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from . import assets, runtime, train

BUILT: dict[str, dict[str, Any]] = {
    "zh-char-bert": {"builder": train.build_zh_char_bert, "defaults": {"steps": 1000},
                     "about": "character-level Chinese BERT (3 layers, width 128) pretrained with MLM on "
                              "the People's Daily, chapter 06's recipe"},
}


def built_path(name: str, **settings: Any) -> Path:
    """The cache folder of a built model for given recipe settings (not built here).

    >>> built_path("zh-char-bert").name
    'zh-char-bert-steps1000'
    >>> built_path("zh-char-bert", steps=20).name
    'zh-char-bert-steps20'
    """
    if name not in BUILT:
        raise assets.AssetError(f"unknown built model {name!r}; built models: {', '.join(BUILT)}")
    unknown = set(settings) - set(BUILT[name]["defaults"])
    if unknown:
        raise assets.AssetError(f"{name!r} has no recipe setting {sorted(unknown)}; "
                                f"settings: {', '.join(BUILT[name]['defaults'])}")
    spec = {**BUILT[name]["defaults"], **settings}
    return runtime.cache_dir() / (name + "-" + "-".join(f"{k}{v}" for k, v in sorted(spec.items())))


def build(name: str, **settings: Any) -> Path:
    """A model the book trains itself: built once with its recipe (see `BUILT`), then cached.

    >>> p = build("zh-char-bert", steps=20)   # seconds; the default 1,000 steps take minutes  # doctest: +SKIP
    """
    out = built_path(name, **settings)
    if not (out / "config.json").exists():
        with runtime.cache_lock(out.name):
            if not (out / "config.json").exists():  # another process may have built it meanwhile
                print(f"labkit: building {name} ({BUILT[name]['about']}) in {out}, once", file=sys.stderr)
                builder: Callable[..., Any] = BUILT[name]["builder"]
                tmp = out.with_name(out.name + ".tmp")  # renamed when complete: never half a model
                shutil.rmtree(tmp, ignore_errors=True)
                builder(tmp, **{**BUILT[name]["defaults"], **settings})
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
    return out


def resolve(name: str, **settings: Any) -> str:
    """A built name becomes its (built) folder; anything else goes to `assets.resolve`.

    >>> resolve("minilm-l6").endswith("model")
    True
    """
    if name in BUILT:
        return str(build(name, **settings))
    return assets.resolve(name)
