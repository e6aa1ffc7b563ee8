"""labkit.widgets: the sampler generates what labkit.generate generates, with or without a frontend."""
import pytest
import torch

from labkit import generate as G
from labkit import widgets


pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_equals_generate_with_the_same_settings(tiny_chat, tok):
    s = widgets.Sampler(tiny_chat, tok, prompt="Name a colour.", temperature=0.7, top_k=20, top_p=0.9,
                        max_new_tokens=10, seed=5)
    text = s.run()
    ids = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    torch.manual_seed(5)
    out = G.generate(tiny_chat, ids, max_new_tokens=10, do_sample=True, temperature=0.7, top_k=20, top_p=0.9)
    assert text == tok.decode(out.new_tokens[0], skip_special_tokens=True)
    assert s.history[-1]["text"] == text and s.history[-1]["temperature"] == 0.7


def test_controls_drive_the_settings(tiny_chat, tok):
    s = widgets.Sampler(tiny_chat, tok, max_new_tokens=4)
    if s.controls is None:
        pytest.skip("ipywidgets is not installed")
    s.controls["temperature"].value = 1.5
    s.controls["prompt"].value = "Hello"
    s.run()
    assert s.settings.temperature == 1.5 and s.prompt == "Hello"
    s.run(top_k=0)  # a keyword moves the slider too
    assert s.controls["top_k"].value == 0
    bundle = s._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "temperature=1.5" in bundle["text/plain"]  # headless output stays meaningful


def test_without_ipywidgets_it_still_generates(tiny_chat, tok, monkeypatch):
    monkeypatch.setattr(widgets, "has_widgets", lambda: False)
    s = widgets.Sampler(tiny_chat, tok, max_new_tokens=3, chat=False)
    assert s.controls is None
    assert isinstance(s.run(prompt="abc"), str)
    assert "ipywidgets not installed" in repr(s)
    assert set(s._repr_mimebundle_()) == {"text/plain"}


def test_bad_settings_are_rejected(tiny_chat, tok):
    with pytest.raises(TypeError, match="valid"):
        widgets.Sampler(tiny_chat, tok, temprature=0.5)
    with pytest.raises(ValueError, match="top_p"):
        widgets.Sampler(tiny_chat, tok, top_p=0.0)
    s = widgets.Sampler(tiny_chat, tok)
    with pytest.raises(ValueError, match="temperature"):
        s.run(temperature=-1.0)
