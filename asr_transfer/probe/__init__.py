"""Exact probes on cached pooled features (``probe=lbfgs``): full-batch fits instead of minibatch epochs."""
