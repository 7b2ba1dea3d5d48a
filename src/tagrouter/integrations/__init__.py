"""Integrations of TagRouter into other gateways (one module each; their packages are optional extras)."""
