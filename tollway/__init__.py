"""Tollway: a self-hosted LLM gateway that speaks the Anthropic Messages API."""

__version__ = "0.1.0"
