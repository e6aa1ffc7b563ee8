"""Homomorphic encryption (同态加密) with TenSEAL CKKS: `ckks_context`, `encrypted_linear`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def ckks_context(poly_modulus_degree: int = 8192, coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
                 scale_bits: int = 40):
    """A TenSEAL CKKS context with Galois keys (needed for the rotations inside a dot product).

    >>> ctx = ckks_context()           # the client keeps this one: it holds the secret key
    >>> server_ctx = ctx.copy(); server_ctx.make_context_public()
    """
    import tenseal as ts

    if poly_modulus_degree not in (4096, 8192, 16384, 32768):
        raise ValueError(f"poly_modulus_degree must be a power of two in 4096..32768; got {poly_modulus_degree}")
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=poly_modulus_degree,
                     coeff_mod_bit_sizes=list(coeff_mod_bit_sizes))
    ctx.global_scale = 2 ** scale_bits
    ctx.generate_galois_keys()
    return ctx


def encrypted_linear(enc_x, weight: np.ndarray, bias: np.ndarray):
    """Server side: encrypted x -> encrypted logits x @ W^T + b, never seeing x (W, b in plaintext).

    `enc_x` is a TenSEAL CKKSVector; W is (classes, features). Returns one encrypted logit per class.
    >>> # enc = ts.ckks_vector(ctx, x); logits = [c.decrypt()[0] for c in encrypted_linear(enc, W, b)]
    """
    w = np.asarray(weight, float)
    if w.ndim != 2 or w.shape[1] != enc_x.size():
        raise ValueError(f"weight must be (classes, {enc_x.size()}); got shape {w.shape}")
    # One encrypted dot product per class: TenSEAL's vector-matrix product rotates once per input
    # feature, a dot product only log2(features) times, so this is many times faster for few classes.
    return [enc_x.dot(row.tolist()) + float(bb) for row, bb in zip(w, np.asarray(bias, float))]
