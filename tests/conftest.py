"""Tests run offline, from the book's root, with a shared labkit cache (the converted SmolLM2)."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("LABKIT_ROOT", str(ROOT))
os.environ.pop("LABKIT_PROFILE", None)
os.environ.pop("LABKIT_METRICS_FILE", None)


@pytest.fixture
def root() -> Path:
    return ROOT
