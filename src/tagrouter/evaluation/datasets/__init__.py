"""Converters from public benchmark data to TagRouter history records and catalogues."""
