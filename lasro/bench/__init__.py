"""Benchmarks: the cost of a LaSRO step (``step``), overlapped scoring (``overlap``), and methods compared
at an equal budget of true-reward queries (``compare``)."""
