"""`labkit doctor`: checks the machine for the book and prints [OK]/[FAIL] lines."""
from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

from .. import assets, data, runtime
from .manifest import DEFAULT_PROFILE


SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))
KERNEL = "labkit"


def kernel_check(manager) -> tuple[bool, str]:
    """The book's kernel must exist and start this environment's Python, never another interpreter."""
    import json
    import os

    specs = manager.find_kernel_specs()
    if KERNEL not in specs:
        return False, (f"Jupyter kernel {KERNEL!r} missing: `make setup` registers it "
                       f"(or `{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL}`)")
    argv = json.loads((Path(specs[KERNEL]) / "kernel.json").read_text())["argv"]
    same = os.path.realpath(argv[0]) == os.path.realpath(sys.executable) or argv[0] in ("python", "python3")
    return same, (f"Jupyter kernel {KERNEL!r} runs {argv[0]}" + ("" if same else
                  f", not this environment's {sys.executable}: re-run `make setup`"))


def doctor() -> list[tuple[bool, str]]:
    """Check the machine for the book: each line is (ok, message). The CLI prints [OK]/[FAIL]."""
    checks: list[tuple[bool, str]] = []
    ok_py = SUPPORTED_PYTHONS[0] <= sys.version_info[:2] <= SUPPORTED_PYTHONS[-1]
    checks.append((ok_py, f"python {sys.version.split()[0]} (the book is tested on "
                          f"{', '.join('%d.%d' % v for v in SUPPORTED_PYTHONS)})"))
    try:
        import torch

        cuda_pkgs = sorted(d.metadata["Name"] for d in md.distributions()
                           if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
        dev = runtime.resolve_device("auto")
        if dev == "cuda":
            checks.append((True, f"torch {torch.__version__}, GPU: {torch.cuda.get_device_name(0)}"))
        elif dev == "mps":
            checks.append((True, f"torch {torch.__version__}, Apple GPU (mps): use `labkit run --device mps`"))
        else:
            # A CUDA build works on the CPU, it only wastes disk: a note, not a failure. The advice
            # rebuilds the venv alone, so the reader's runs/ stay.
            checks.append((True, f"torch {torch.__version__} on CPU"
                           + (f" (a CUDA build: {len(cuda_pkgs)} nvidia-* packages unused without a GPU; for the "
                              "small CPU wheel, `make clean-venv setup` where PyTorch's CPU index is reachable; "
                              "your runs/ stay)" if cuda_pkgs else "")))
    except Exception as e:  # noqa: BLE001 - doctor reports every failure as a line
        checks.append((False, f"torch does not import: {e}"))
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        checks.append(kernel_check(KernelSpecManager()))
    except Exception as e:  # noqa: BLE001
        checks.append((False, f"jupyter_client missing: {e}"))
    for name in assets.ASSETS:
        try:
            checks.append((True, f"asset {name}: {assets.source(name)}"))
        except Exception as e:  # noqa: BLE001
            checks.append((False, f"asset {name}: {e}"))
    for name in data.DATASETS:
        try:
            data.source_files(name)
            checks.append((True, f"data {name}"))
        except Exception as e:  # noqa: BLE001
            checks.append((False, f"data {name}: {e}"))
    cache = runtime.cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / ".write-test"
        probe.write_text("ok")
        probe.unlink()
        checks.append((True, f"cache directory {cache} is writable"))
    except OSError as e:
        checks.append((False, f"cache directory {cache} is not writable ({e}); set LABKIT_CACHE"))
    checks.append((True, f"hub {'off (offline)' if runtime.offline() else 'on'}; profile default: {DEFAULT_PROFILE}"))
    return checks

