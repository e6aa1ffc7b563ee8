"""The book on macOS and Windows: what is Linux-only has a portable fallback, tested by taking it away."""
import builtins
import os
import sys

import pytest
import torch

from labkit import runtime
from labkit.book import session


def test_memory_without_psutil_or_sysconf(monkeypatch):
    real_import = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError("simulated: no psutil")
        return real_import(name, *args, **kwargs)

    expected = session.memory_gib()
    monkeypatch.setattr(builtins, "__import__", no_psutil)
    if hasattr(os, "sysconf"):
        assert session.memory_gib() == pytest.approx(expected, abs=0.2)
        monkeypatch.delattr(os, "sysconf")
    assert session.memory_gib() is None  # Windows without psutil: unknown, not a crash
    assert "memory_gib" in session.machine()


def test_peak_memory_without_proc_samples_the_resident_set(monkeypatch):
    from labkit.optimize import measure

    monkeypatch.setattr(measure, "_rss_hwm_kb", lambda: None)  # as on macOS / Windows

    def hold_400mb():
        x = torch.ones(100_000_000)  # 400 MB, touched
        x.add_(1)
        import time
        time.sleep(0.05)

    assert measure.peak_memory_mb(hold_400mb) > 200


def test_no_load_average_needed(monkeypatch):
    """The thread count comes from the profile, never from os.getloadavg (absent on Windows)."""
    monkeypatch.delattr(os, "getloadavg", raising=False)
    monkeypatch.delenv("LABKIT_THREADS", raising=False)  # `make test` sets it for its parallel workers
    env = session.profile_environment({"offline": True, "device": "cpu", "threads": 0})
    assert int(env["LABKIT_THREADS"]) == (os.cpu_count() or 1)


def test_devices_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="device 'cuda' was asked for but torch cannot use it"):
        runtime.resolve_device("cuda")
    with pytest.raises(ValueError, match="not one of auto, cpu, cuda, mps"):
        runtime.resolve_device("tpu")


def test_autocast_is_off_on_the_cpu():
    import contextlib

    assert isinstance(runtime.autocast("cpu"), contextlib.nullcontext)


def test_doctor_names_an_apple_gpu(monkeypatch):
    from labkit.book import doctor

    monkeypatch.setattr(runtime, "resolve_device", lambda asked=None: "mps")
    lines = [msg for ok, msg in doctor.doctor()]
    assert any("Apple GPU (mps)" in m for m in lines)
    assert sys.version_info[:2] in doctor.SUPPORTED_PYTHONS


def test_no_chapter_or_teaching_module_hard_codes_a_device(root):
    """Devices come from labkit.runtime (one rule); a literal 'cuda' or device='cpu' would pin a chapter.

    Allowed: the ground floor and the machinery (they implement the rule), and DDP's per-rank device
    under the nccl backend (chapter 08), which is what that backend means.
    """
    import json
    import re

    pattern = re.compile(r"""device\s*[:=][^=\n]*=\s*["'](cpu|cuda)|device\s*=\s*["'](cpu|cuda)|\.to\(["']cuda|"""
                         r"""torch\.device\(["'](cpu|cuda)|\.cuda\(\)""")
    allowed = {"labkit/runtime.py", "labkit/optimize/distributed.py"}
    found = []
    for path in sorted((root / "labkit").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in allowed or rel.startswith("labkit/book/"):
            continue
        found += [f"{rel}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        for k, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code" and pattern.search("".join(cell["source"])):
                found.append(f"{path.name} cell {k}")
    assert not found, f"hard-coded devices (use labkit.runtime.device()): {found}"
