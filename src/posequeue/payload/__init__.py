"""Batch payloads: how pixels are encoded (``codec``) and which Redis holds them (``shards``)."""
