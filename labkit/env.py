"""Setting a chapter up (seeds, threads, device, offline switches) and checking the machine."""
from __future__ import annotations

import importlib.metadata as md
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from . import book

HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """True when the Hugging Face hub is switched off for this process."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def set_offline(flag: bool) -> None:
    """Switch the hub off (or back on) for this process and the kernels it starts."""
    for var in HUB_OFFLINE_VARS:
        os.environ[var] = "1" if flag else "0"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a chapter gives the same numbers on every run.

    >>> seed_everything(0); import torch; round(torch.rand(1).item(), 4)
    0.4963
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "missing"


def default_threads() -> int:
    """All cores, unless the machine is already busy: then half of them (at least one).

    PyTorch's CPU kernels spin while they wait for their threads; when other processes hold the
    cores, a step can run many times slower with all threads than with fewer.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores
    except OSError:  # not available on every platform
        busy = False
    return max(1, cores // 2) if busy else cores


@dataclass(frozen=True)
class Setup:
    chapter: str | None
    profile: str
    device: str
    threads: int
    seed: int
    offline: bool

    def __str__(self) -> str:
        return (f"chapter {self.chapter} · profile {self.profile} · device {self.device} · "
                f"{self.threads} threads · seed {self.seed} · {'offline' if self.offline else 'hub on'}")


def setup(chapter: str | None = None, seed: int = 0, threads: int | None = None,
          device: str = "auto", quiet: bool = False) -> Setup:
    """Prepare a chapter: profile, seeds, threads, device, hub switch, and one summary line.

    >>> s = labkit.setup(chapter="00", seed=0)      # doctest: +SKIP
    >>> s.device  # doctest: +SKIP
    'cpu'
    """
    import torch

    profile = book.active_profile()
    book.set_chapter(chapter)
    # The hub is reachable only on the gpu profile; everything else must run offline.
    set_offline(profile != "gpu")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    seed_everything(seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but torch sees no CUDA GPU; "
                           "use device='cpu' or the cpu profile")
    info = Setup(chapter, profile, device, threads, seed, offline())
    if not quiet:
        hw = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({os.cpu_count()} cores, no GPU)"
        from . import __version__

        print(f"labkit {__version__} | {info}")
        print(f"hardware: {hw} | python {sys.version.split()[0]} | torch {torch.__version__} | "
              f"transformers {version('transformers')}")
    return info


def machine() -> dict[str, str | int | float]:
    """What a run ran on: OS, CPU, cores, memory, GPU, and the versions that shape its numbers."""
    import platform

    info: dict[str, str | int | float] = {"platform": platform.platform(), "processor": platform.machine(),
                                          "cores": os.cpu_count() or 1, "python": platform.python_version()}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    for pkg in ("torch", "transformers", "datasets", "peft", "labkit"):
        info[pkg] = version(pkg)
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001 - a machine without torch still gets a report
        info["gpu"] = "unknown"
    return info


def doctor() -> list[tuple[bool, str]]:
    """Check the machine for the book: each line is (ok, message). The CLI prints [OK]/[FAIL]."""
    checks: list[tuple[bool, str]] = []
    ok_py = sys.version_info[:2] == (3, 11)
    checks.append((ok_py, f"python {sys.version.split()[0]} (the book is tested on 3.11)"))
    try:
        import torch

        cuda_pkgs = sorted(d.metadata["Name"] for d in md.distributions()
                           if (d.metadata["Name"] or "").lower().startswith("nvidia-"))
        gpu = torch.cuda.is_available()
        if gpu:
            checks.append((True, f"torch {torch.__version__}, GPU: {torch.cuda.get_device_name(0)}"))
        else:
            checks.append((not cuda_pkgs, f"torch {torch.__version__} on CPU"
                           + (f"; CUDA wheels installed without a GPU ({len(cuda_pkgs)} nvidia-* "
                              "packages): reinstall with `make clean && make test`" if cuda_pkgs else "")))
    except Exception as e:  # noqa: BLE001 - doctor reports every failure as a line
        checks.append((False, f"torch does not import: {e}"))
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
        checks.append(("python3" in specs, f"Jupyter kernel 'python3': {specs.get('python3', 'missing')}"))
    except Exception as e:  # noqa: BLE001
        checks.append((False, f"jupyter_client missing: {e}"))
    from . import assets, data

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
    cache = assets.cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / ".write-test"
        probe.write_text("ok")
        probe.unlink()
        checks.append((True, f"cache directory {cache} is writable"))
    except OSError as e:
        checks.append((False, f"cache directory {cache} is not writable ({e}); set LABKIT_CACHE"))
    checks.append((True, f"hub {'off (offline)' if offline() else 'on'}; profile default: {book.DEFAULT_PROFILE}"))
    return checks

