"""Upstream adapters, one per provider family, and the router that picks one for a model."""
