"""Learners: one module per method (``grpo``, ``opid``, ``sdar``, ...) over shared math."""
