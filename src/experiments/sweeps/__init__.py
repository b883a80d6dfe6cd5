"""Sweeps (``run.py -m``): the jobs' records, a monitor that survives failing jobs, and the comparison report."""
