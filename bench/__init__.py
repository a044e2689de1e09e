"""Benchmarks: `python -m bench` runs them all, `python -m bench NAME` one of them.

They print figures next to their targets and never fail on a figure: a benchmark is for reading.
"""
