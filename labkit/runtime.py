"""The ground floor: where the book keeps files, whether the hub is on, and which device to use.

Every other module may import this one; it imports nothing of `labkit`. Each rule lives here once:

- the cache folder: `$LABKIT_CACHE`, else `~/.cache/labkit`;
- the offline rule: the hub is off unless the active profile says `offline = false`; the runner and
  `labkit.setup` both take it from `labkit.book.session.profile_environment` and this module reads
  it back (`offline()`);
- the device rule: `$LABKIT_DEVICE` (set by `labkit run --device`, by `labkit.setup(device=...)` or
  from the profile's `device`), else what exists: cuda, then Apple's mps, then cpu.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
ENV_DEVICE = "LABKIT_DEVICE"
DEVICES = ("auto", "cpu", "cuda", "mps")


def cache_dir() -> Path:
    """Where converted models, built models and prepared data live: $LABKIT_CACHE or ~/.cache/labkit.

    >>> cache_dir().is_absolute()
    True
    """
    return Path(os.environ.get("LABKIT_CACHE") or Path.home() / ".cache" / "labkit").expanduser().absolute()


@contextlib.contextmanager
def cache_lock(name: str):
    """Hold a lock on one cache entry while it is built, so parallel runs (pytest-xdist, two notebooks)
    never convert or train the same asset at once; the second waits, then finds it built.

    >>> with cache_lock("doctest-entry"): pass
    """
    from filelock import FileLock

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f".{name}.lock")):
        yield


def offline() -> bool:
    """True when the Hugging Face hub is switched off for this process.

    >>> set_offline(True); offline()
    True
    """
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def set_offline(flag: bool) -> None:
    """Switch the hub off (or back on) for this process and the kernels it starts."""
    for var in HUB_OFFLINE_VARS:
        os.environ[var] = "1" if flag else "0"


def _available(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return kind == "cpu"


def resolve_device(asked: str | None = None) -> str:
    """The device a chapter uses: `asked`, else $LABKIT_DEVICE, else the best one that exists.

    `auto` means cuda if torch sees a GPU, else mps (Apple), else cpu. Asking for a device that is
    not there is an error that says what exists, never a silent fall-back to the CPU.

    >>> resolve_device("cpu")
    'cpu'
    """
    asked = (asked or os.environ.get(ENV_DEVICE) or "auto").strip()
    kind = asked.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device {asked!r} is not one of {', '.join(DEVICES)} (a cuda index like 'cuda:1' is fine)")
    if kind == "auto":
        return next(k for k in ("cuda", "mps", "cpu") if _available(k))
    if not _available(kind):
        found = [k for k in ("cuda", "mps") if _available(k)] or ["only the cpu"]
        raise RuntimeError(f"device {asked!r} was asked for but torch cannot use it (this machine has "
                           f"{', '.join(found)}); use --device cpu or the cpu profile")
    return asked


def device() -> str:
    """The device of this process (what `labkit.setup` chose): move models and batches here.

    >>> import os; os.environ["LABKIT_DEVICE"] = "cpu"; device()
    'cpu'
    """
    return resolve_device(None)


def autocast(dev: str | None = None):
    """Mixed precision for `dev`: bf16 autocast on CUDA where supported, fp16 on older GPUs, none on CPU.

    >>> with autocast("cpu"): pass
    """
    import torch

    dev = dev or device()
    if dev.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if dev == "mps":
        return torch.autocast("mps", dtype=torch.float16)
    return contextlib.nullcontext()


def synchronize(dev: str | None = None) -> None:
    """Wait until `dev` has finished its queued work (CUDA and MPS run asynchronously): call before
    reading a clock. A no-op on the CPU.

    >>> synchronize("cpu")
    """
    import torch

    dev = dev or device()
    if dev.startswith("cuda"):
        torch.cuda.synchronize(dev)
    elif dev == "mps":
        torch.mps.synchronize()
