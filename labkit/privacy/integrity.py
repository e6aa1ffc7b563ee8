"""Model integrity and encryption at rest: `sha256_file`, `write_manifest`, `verify_manifest`,
`encrypt_file`, `decrypt_file`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints can be larger than memory).

    >>> # sha256_file("model.safetensors")
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(files: Iterable[str | Path], out: str | Path) -> dict[str, str]:
    """Write {file name: sha256} as JSON next to the files; publish it through a trusted channel.

    >>> # write_manifest(["model.safetensors"], "MANIFEST.json")
    """
    out = Path(out)
    manifest = {Path(f).name: sha256_file(f) for f in files}
    out.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_manifest(manifest: str | Path, folder: str | Path | None = None) -> dict[str, bool]:
    """Check each file listed in a manifest: {name: hash matches}. A missing file is False.

    >>> # all(verify_manifest("MANIFEST.json").values())
    """
    manifest = Path(manifest)
    folder = Path(folder) if folder else manifest.parent
    want = json.loads(manifest.read_text())
    return {name: (folder / name).is_file() and sha256_file(folder / name) == h for name, h in want.items()}


def encrypt_file(path: str | Path, key: bytes, out: str | Path | None = None) -> Path:
    """Encrypt a file at rest with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

    >>> # key = Fernet.generate_key(); encrypt_file("model.safetensors", key)
    """
    from cryptography.fernet import Fernet

    path = Path(path)
    out = Path(out) if out else path.with_suffix(path.suffix + ".enc")
    out.write_bytes(Fernet(key).encrypt(path.read_bytes()))
    return out


def decrypt_file(path: str | Path, key: bytes) -> bytes:
    """Decrypt a Fernet file; a wrong key or a changed byte raises cryptography's InvalidToken.

    >>> # data = decrypt_file("model.safetensors.enc", key)
    """
    from cryptography.fernet import Fernet

    return Fernet(key).decrypt(Path(path).read_bytes())
