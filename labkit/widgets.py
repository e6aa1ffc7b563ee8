"""An interactive sampler: a prompt box, decoding sliders and an output area (ipywidgets).

`Sampler(model, tokenizer)` shows the controls in JupyterLab; each click streams a new generation
through `labkit.generate`. It degrades gracefully: without a frontend (papermill, a terminal) the
display is a plain-text summary of the settings and `sampler.run()` still returns the text; without
ipywidgets installed it works as a plain object with the same attributes.

    >>> s = Sampler(model, tok, prompt="Write a haiku about rain.")   # doctest: +SKIP
    >>> s                                   # the controls in JupyterLab, a summary elsewhere  # doctest: +SKIP
    >>> print(s.run(temperature=0.7))       # one generation with these settings             # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from . import generate as gen

__all__ = ["Sampler", "SamplerSettings", "has_widgets"]


def has_widgets() -> bool:
    """True when ipywidgets can be imported (the controls can be built)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class SamplerSettings:
    """The knobs the sampler exposes; top_k 0 and top_p 1.0 mean "off".

    >>> SamplerSettings(temperature=0.7).generate_kwargs()["temperature"]
    0.7
    """

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    max_new_tokens: int = 48
    seed: int = 0
    chat: bool = True  # wrap the prompt in the model's chat template

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ValueError(f"top_k must be an integer >= 0 (0 means off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 means off), got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 means off), got {self.repetition_penalty}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Arguments for `labkit.generate.generate` (sampling)."""
        return {"do_sample": True, "temperature": self.temperature, "top_k": self.top_k or None,
                "top_p": self.top_p if self.top_p < 1 else None,
                "repetition_penalty": self.repetition_penalty, "max_new_tokens": self.max_new_tokens}


class Sampler:
    """A prompt box, temperature / top-k / top-p / length sliders, a Generate button and an output area.

    >>> s = Sampler(model, tok)               # doctest: +SKIP
    >>> s.run(prompt="Name a colour.", temperature=0.3, max_new_tokens=8)   # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, prompt: str = "Write a short story opening about a lighthouse.",
                 system: str | None = None, **settings: Any):
        valid = set(SamplerSettings.__dataclass_fields__)
        unknown = set(settings) - valid
        if unknown:
            raise TypeError(f"unknown sampler setting(s) {sorted(unknown)}; valid: {sorted(valid)}")
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.settings = SamplerSettings(**settings)
        self.settings.validate()
        self.prompt = prompt
        self.history: list[dict[str, Any]] = []  # every run: settings, prompt, text, tokens/s
        self.controls = self._build() if has_widgets() else None

    # -- the controls ---------------------------------------------------------------------------
    def _build(self):
        import ipywidgets as w

        s = self.settings
        style = {"description_width": "110px"}
        layout = w.Layout(width="420px")
        c = {
            "prompt": w.Textarea(value=self.prompt, description="prompt", layout=w.Layout(width="600px", height="70px"),
                                 style=style),
            "temperature": w.FloatSlider(value=s.temperature, min=0.05, max=2.0, step=0.05, description="temperature",
                                         style=style, layout=layout),
            "top_k": w.IntSlider(value=s.top_k, min=0, max=200, step=1, description="top-k (0 = off)",
                                 style=style, layout=layout),
            "top_p": w.FloatSlider(value=s.top_p, min=0.05, max=1.0, step=0.01, description="top-p (1 = off)",
                                   style=style, layout=layout),
            "repetition_penalty": w.FloatSlider(value=s.repetition_penalty, min=1.0, max=2.0, step=0.05,
                                                description="repetition pen.", style=style, layout=layout),
            "max_new_tokens": w.IntSlider(value=s.max_new_tokens, min=1, max=256, description="new tokens",
                                          style=style, layout=layout),
            "seed": w.IntText(value=s.seed, description="seed", style=style, layout=w.Layout(width="220px")),
            "button": w.Button(description="Generate", button_style="primary"),
            "output": w.Output(layout=w.Layout(border="1px solid #ccc", padding="6px", width="600px")),
        }
        c["button"].on_click(lambda _: self._on_click())
        c["box"] = w.VBox([c["prompt"], c["temperature"], c["top_k"], c["top_p"], c["repetition_penalty"],
                           c["max_new_tokens"], w.HBox([c["seed"], c["button"]]), c["output"]])
        return c

    def _read_controls(self) -> None:
        if self.controls is None:
            return
        c = self.controls
        self.prompt = c["prompt"].value
        for name in ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens", "seed"):
            setattr(self.settings, name, c[name].value)

    def _on_click(self) -> None:
        out = self.controls["output"]
        out.clear_output()
        with out:
            try:
                self.run(echo=True)
            except Exception as e:  # noqa: BLE001 - shown in the output area instead of lost in a callback
                print(f"error: {e}")

    # -- generation -----------------------------------------------------------------------------
    def input_ids(self, prompt: str | None = None):
        """The prompt as token ids, through the chat template when `settings.chat` is on."""
        prompt = self.prompt if prompt is None else prompt
        if self.settings.chat and getattr(self.tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + \
                       [{"role": "user", "content": prompt}]
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        return ids.to(next(self.model.parameters()).device)

    def run(self, prompt: str | None = None, echo: bool = False, **settings: Any) -> str:
        """Generate once with the current controls (or the given settings) and return the text.

        With `echo=True` the text is printed piece by piece as it is generated.
        """
        import time

        import torch

        self._read_controls()
        for name, value in settings.items():
            if name not in SamplerSettings.__dataclass_fields__:
                raise TypeError(f"unknown sampler setting {name!r}; valid: {sorted(SamplerSettings.__dataclass_fields__)}")
            setattr(self.settings, name, value)
            if self.controls is not None and name in self.controls:
                self.controls[name].value = value  # keep the sliders in step with what was run
        self.settings.validate()
        if prompt is not None:
            self.prompt = prompt
            if self.controls is not None:
                self.controls["prompt"].value = prompt
        ids = self.input_ids()
        torch.manual_seed(self.settings.seed)
        t0, pieces = time.perf_counter(), []
        for piece in gen.stream(self.model, self.tokenizer, ids, **self.settings.generate_kwargs()):
            pieces.append(piece)
            if echo:
                print(piece, end="", flush=True)
        seconds = time.perf_counter() - t0
        text = "".join(pieces)
        n_tokens = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        self.history.append({**asdict(self.settings), "prompt": self.prompt, "text": text,
                             "tokens_per_s": n_tokens / seconds if seconds > 0 else float("nan")})
        if echo:
            print(f"\n[{n_tokens} tokens, {seconds:.1f} s]")
        return text

    # -- display --------------------------------------------------------------------------------
    def summary(self) -> str:
        s = self.settings
        last = f"\nlast output: {self.history[-1]['text']!r}" if self.history else ""
        mode = "interactive controls (open in JupyterLab)" if self.controls is not None else \
            "ipywidgets not installed: call .run(...)"
        return (f"Sampler [{mode}]\nprompt: {self.prompt!r}\ntemperature={s.temperature}, top_k={s.top_k}, "
                f"top_p={s.top_p}, repetition_penalty={s.repetition_penalty}, max_new_tokens={s.max_new_tokens}, "
                f"seed={s.seed}{last}")

    def __repr__(self) -> str:
        return self.summary()

    def _repr_mimebundle_(self, include=None, exclude=None):
        # A frontend renders the widget view; a headless run (papermill, nbconvert) stores the
        # text/plain part, so it says something useful instead of "VBox(children=...)".
        bundle = {"text/plain": self.summary()}
        if self.controls is not None:
            widget_bundle = self.controls["box"]._repr_mimebundle_(include=include, exclude=exclude) or {}
            bundle.update({k: v for k, v in widget_bundle.items() if k != "text/plain"})
        return bundle
