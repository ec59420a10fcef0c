"""Benchmark protocols, leaderboard and reports, plus measurement scripts (``python benchmarks/<x>.py``)."""
