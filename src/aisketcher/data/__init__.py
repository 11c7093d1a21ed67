"""Datasets, batching and downloads (torch only where batches become tensors)."""
