"""No result typed into prose: a number in a notebook's markdown must be a setting, a citation or generated.

A result stated in markdown goes stale the day the code changes; chapters render such sentences from
the run (`IPython.display.Markdown(f"...")`) or make them targets. The rule, kept practical:

- a decimal number or a percentage in a markdown cell is flagged (whole numbers are counts and
  sizes: "3 layers", "40 sentences");
- accepted: headings (section numbers), maths (`$...$`), code spans, the source-guide references
  ("004 §3.1", "000: 1.1"), version numbers after a name ("PyTorch 2.13", "trl 1.16", "CC BY-SA 3.0"),
  the Exercises section (it suggests settings to try);
- accepted: a number that is also a literal in the notebook's code (a setting the reader can see
  and change, e.g. a temperature, a threshold, a split share);
- accepted: a sentence that cites its source (an author-year "(Mitchell et al., 2019)", a link, a
  "paper", a "model card", "the authors'" convention, a "rule of thumb").
"""
import json
import re

import pytest

NUMBER = re.compile(r"(?<![\w.$\\§-])(\d+\.\d+|\d+(?:\.\d+)?\s?%)(?![\w.])")
CITATION = re.compile(r"\(\s*[A-Z][^()]*\d{4}[a-z]?\s*\)|\]\(https?://|arXiv|model card|paper|published|authors'|"
                      r"et al\.|convention|rule of thumb", re.I)
VERSION = re.compile(r"\b(?:v|version|python|pytorch|torch|transformers|trl|peft|squad|mathjax|by(?:-sa)?|"
                     r"cc0|gpl|apache)\s*\d+(?:\.\d+)+", re.I)


def _prose(markdown: str) -> str:
    text = re.sub(r"```.*?```|\$\$.*?\$\$", " ", markdown, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$|`[^`\n]*`", " ", text)
    text = re.sub(r"^#+ .*$", " ", text, flags=re.M)
    text = re.sub(r"§\s*[\d.]+(?:\s*[-–]\s*[\d.]+)?|\b\d{3}\s*:\s*(?:ch\.?\s*)?[\d.]+(?:\s*[,-]\s*[\d.]+)*", " ", text)
    return VERSION.sub(" ", text)


def stated_numbers(nb: dict) -> list[tuple[int, str, str]]:
    """(cell index, number, sentence) for every number the rule above does not accept."""
    code = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    literals = set(re.findall(r"\d+(?:\.\d+)?", code))
    found = []
    for k, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or source.lstrip().startswith("## Exercises"):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+|\n", _prose(source)):
            if CITATION.search(sentence):
                continue
            for number in NUMBER.findall(sentence):
                value = number.rstrip("% ")
                shares = {value, format(float(value) / 100, "g")} if number.endswith("%") else {value}
                if not shares & literals:
                    found.append((k, number, sentence.strip()))
    return found


def test_the_rule_flags_a_typed_result_and_accepts_the_rest():
    nb = {"cells": [
        {"cell_type": "code", "source": ["temperature = 0.7\nsplit = 0.1"]},
        {"cell_type": "markdown", "source": ["Sampling at temperature 0.7 keeps 10% for validation. "
                                             "Our model reaches an accuracy of 0.87 on the test split.\n"
                                             "### 3.1 Heading\nPyTorch 2.13 ships it; $x = 0.5$; `lr=3e-4`. "
                                             "AdamW (Loshchilov & Hutter, 2019) uses 0.01."]},
        {"cell_type": "markdown", "source": ["## Exercises\n1. Try 0.35."]},
    ]}
    assert [(k, n) for k, n, _ in stated_numbers(nb)] == [(1, "0.87")]


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).resolve().parent.parent
                                        .joinpath("notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_result_is_typed_into_a_notebook(path):
    flagged = stated_numbers(json.loads(path.read_text(encoding="utf-8")))
    assert not flagged, ("numbers in markdown that are neither settings, citations nor generated "
                         f"(render them from the run, or cite them): {flagged[:5]}")


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).resolve().parent.parent
                                        .joinpath("notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_introduction_takes_its_minutes_from_book_toml(path):
    """A chapter's time is measured into book.toml and printed by `labkit.setup`; typed into the
    introduction it goes stale (issue 18 found stale times in chapters 02 and 04)."""
    intro = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    typed = re.findall(r"\b\d+(?:\.\d+)?\s*(?:(?:to|-|–)\s*\d+\s*)?min(?:ute)?s?\b", intro)
    assert not typed, f"{path.name}: minutes typed into the introduction {typed}; point at the setup cell instead"
