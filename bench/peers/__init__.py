"""Helpers of bench/compare.py: the peer gateways (targets.py), /proc readings (procfs.py), pins and configs."""
