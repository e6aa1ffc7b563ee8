"""Setting a chapter up: profile, seeds, threads, device, the hub switch, and what machine it ran on."""
from __future__ import annotations

import importlib.metadata as md
import os
import random
import sys
from dataclasses import dataclass

from .. import runtime
from . import results as rec
from .manifest import ManifestError, load_book


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


ENV_THREADS = "LABKIT_THREADS"
ENV_HUB = "LABKIT_HUB"  # 1: the hub on whatever the profile says (`labkit run --hub`), for readers with internet


def profile_environment(profile: dict, device: str | None = None, threads: int | None = None) -> dict[str, str]:
    """The environment a chapter runs in, from its profile and the reader's overrides: the one rule.

    The hub is off unless the profile says `offline = false` or $LABKIT_HUB is 1 (`labkit run --hub`:
    a reader with internet who names hub models as parameters); the device is the override, else
    $LABKIT_DEVICE, else the profile's `device` (`auto`: whatever exists); threads likewise, where 0
    means all cores. The runner puts these into the kernel's environment; `setup` into its own.

    >>> env = profile_environment({"offline": True, "device": "auto", "threads": 0}, device="cpu")
    >>> env["HF_HUB_OFFLINE"], env["LABKIT_DEVICE"]
    ('1', 'cpu')
    """
    hub = os.environ.get(ENV_HUB, "0") not in ("", "0", "false", "False")
    flag = "1" if profile.get("offline", True) and not hub else "0"
    env = {var: flag for var in runtime.HUB_OFFLINE_VARS}
    env[runtime.ENV_DEVICE] = str(device or os.environ.get(runtime.ENV_DEVICE) or profile.get("device", "auto"))
    n = threads if threads is not None else os.environ.get(ENV_THREADS) or profile.get("threads", 0)
    try:
        n = int(n)
    except ValueError:
        raise ValueError(f"{ENV_THREADS}={n!r}: the thread count must be a whole number (0 = all cores)") from None
    env[ENV_THREADS] = str(n if n > 0 else os.cpu_count() or 1)
    return env


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


def _profile_table(name: str) -> dict:
    try:
        return load_book().profile(name)
    except ManifestError:  # a notebook copied out of the book: the safe defaults
        return {"offline": True, "device": "auto", "threads": 0}


def _chapter_minutes(chapter: str | None, profile: str) -> float | None:
    try:
        return load_book().chapter(chapter).minutes.get(profile) if chapter else None
    except ManifestError:
        return None


def setup(chapter: str | None = None, seed: int = 0, threads: int | None = None,
          device: str | None = None, quiet: bool = False) -> Setup:
    """Prepare a chapter: profile, seeds, threads, device, hub switch, and one summary line.

    Threads come from the profile (or $LABKIT_THREADS / `threads=`), never from the machine's load,
    so the same chapter, profile and seed give the same numbers on the same kind of machine.

    >>> s = labkit.setup(chapter="00", seed=0)      # doctest: +SKIP
    >>> s.device  # doctest: +SKIP
    'cpu'
    """
    import torch

    profile = rec.active_profile()
    rec.set_chapter(chapter)
    env = profile_environment(_profile_table(profile), device=device, threads=threads)
    os.environ.update(env)
    n_threads = int(env[ENV_THREADS])
    torch.set_num_threads(n_threads)
    seed_everything(seed)
    dev = runtime.resolve_device(env[runtime.ENV_DEVICE])
    os.environ[runtime.ENV_DEVICE] = dev
    info = Setup(chapter, profile, dev, n_threads, seed, runtime.offline())
    if not quiet:
        from .. import __version__

        print(f"labkit {__version__} | {info}")
        minutes = _chapter_minutes(chapter, profile)
        if minutes:
            print(f"expected time: about {minutes:g} min on the {profile} profile (book.toml, measured on a 2-core CPU)")
        print(f"hardware: {hardware(dev)} | python {sys.version.split()[0]} | torch {torch.__version__} | "
              f"transformers {version('transformers')}")
    return info


def hardware(dev: str) -> str:
    """One line naming the accelerator, or the CPU when there is none."""
    import torch

    if dev.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(dev))
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if dev == "mps":
        return "Apple GPU (mps)"
    return f"CPU ({os.cpu_count()} cores, no GPU)"


def memory_gib() -> float | None:
    """Installed memory: psutil where it is installed (every OS), else POSIX sysconf, else unknown."""
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        return round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # Windows has no sysconf
        return None


def machine() -> dict[str, str | int | float]:
    """What a run ran on: OS, CPU, cores, memory, GPU, and the versions that shape its numbers."""
    import platform

    info: dict[str, str | int | float] = {"platform": platform.platform(), "processor": platform.machine(),
                                          "cores": os.cpu_count() or 1, "python": platform.python_version()}
    info["memory_gib"] = memory_gib()
    for pkg in ("torch", "transformers", "datasets", "peft", "labkit"):
        info[pkg] = version(pkg)
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"], info["gpu_memory_gib"] = props.name, round(props.total_memory / 2**30, 1)
        else:
            info["gpu"] = "mps" if runtime.resolve_device("auto") == "mps" else "none"
    except Exception:  # noqa: BLE001 - a machine without torch still gets a report
        info["gpu"] = "unknown"
    return info
