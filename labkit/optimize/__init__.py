"""Making a trained model smaller and faster, and training it on more than one process.

Chapter 08 teaches each piece; the functions work on any BERT-style classifier. One module per idea:
- `measure`: latency (`benchmark`, `compare_latency`), `size_on_disk_mb`, `peak_memory_mb`, the CPU's
  int8 instructions (`int8_instructions`);
- `quantization`: affine int8/int4 written out (`quant_params`, `fake_quantize`, `HandInt8Linear`)
  and the fast CPU kernels (`dynamic_int8`, `weight_only`);
- `pruning`: unstructured (`prune_magnitude_`) and structured (`prune_ffn_`);
- `low_rank`: truncated-SVD factorisation (`svd_linear`, `low_rank_`);
- `distillation`: `distillation_loss`, `small_bert`, `augment`, `train_student`;
- `inference`: padding and batching (`make_batches`), the KV cache (`greedy_generate`);
- `distributed`: data-parallel training (`run_data_parallel`, `train_reference`, `choose_backend`);
- `monitoring`: drift and latency in deployment (`psi`, `Monitor`);
- `linears` (finding and swapping a model's Linear layers) and `errors` (`OptimizeError`).
Everything is re-exported here: `from labkit import optimize as opt; opt.benchmark(...)`.
"""
from .errors import OptimizeError
from .measure import Bench, benchmark, compare_latency, size_on_disk_mb, peak_memory_mb, int8_instructions
from .quantization import (
    quant_params, quantize, dequantize, fake_quantize, HandInt8Linear, WeightOnlyInt8Linear, Int4Linear,
    weight_only, dequantized_copy, dynamic_int8,
)
from .pruning import prune_magnitude_, weight_sparsity, prune_ffn_
from .low_rank import svd_linear, low_rank_
from .distillation import distillation_loss, small_bert, augment, train_student
from .inference import make_batches, pad_fraction, greedy_generate
from .distributed import DPJob, train_reference, dp_worker, run_data_parallel, max_abs_diff, choose_backend
from .monitoring import psi, Monitor


__all__ = [
    "OptimizeError", "Bench", "benchmark", "compare_latency", "size_on_disk_mb", "peak_memory_mb", "int8_instructions",
    "quant_params", "quantize", "dequantize", "fake_quantize", "HandInt8Linear", "WeightOnlyInt8Linear",
    "Int4Linear", "weight_only", "dequantized_copy", "dynamic_int8", "prune_magnitude_",
    "weight_sparsity", "prune_ffn_", "svd_linear", "low_rank_", "distillation_loss", "small_bert",
    "augment", "train_student", "make_batches", "pad_fraction", "greedy_generate", "DPJob",
    "train_reference", "dp_worker", "run_data_parallel", "max_abs_diff", "choose_backend", "psi", "Monitor",
]
