"""Klaw's benchmarks: each workload's figure next to its floor, measured in the same run.

Run with ``make bench`` (``python -m bench``); see ``python -m bench --help`` for the flags.
The workloads and targets are those of "Performance targets" in the design document.
"""
