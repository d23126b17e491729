"""Governance steps the pipeline applies to every call: identity now; access, limits, DLP, metering, audit next."""
