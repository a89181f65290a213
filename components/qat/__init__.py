"""qat: quantization-aware training that keeps the pruned zeros (PQAT)."""
