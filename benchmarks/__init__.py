"""Benchmark protocols, the leaderboard, HTML reports and run comparison.

Measurement scripts live beside them and run as ``python benchmarks/<name>.py``
(``env_throughput``, ``backend_throughput``, ``step_breakdown``, ...).

* :mod:`benchmarks.protocols`: what a benchmark id measures, and its content hash.
* :mod:`benchmarks.stats`: confidence intervals (t, Wilson/Newcombe, bootstrap).
* :mod:`benchmarks.leaderboard`: learners x models on one protocol, with paper rows.
* :mod:`benchmarks.report`: a self-contained HTML page for one run folder.
* :mod:`benchmarks.compare`: metric differences between two runs, with intervals.
* :mod:`benchmarks.commands`: the ``opid-bench`` commands built on them.

This package imports :mod:`opid_gym`; the core reaches it only lazily (the CLI and
:func:`opid_gym.evaluate.evaluate` through ``opid_gym.builtin.PROTOCOL_RESOLVER``).
"""
