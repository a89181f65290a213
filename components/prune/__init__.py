"""prune: magnitude pruning to a target sparsity with tensorflow-model-optimization."""
