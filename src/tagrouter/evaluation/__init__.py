"""Evaluation: data-set loaders, the cross-validation protocol, metrics, baseline routers and the runner."""
