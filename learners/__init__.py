"""Learners: one module per method (``grpo``, ``opid``, ``sdar``, ...) over shared math.

Each module defines a :class:`opid_gym.learner.Learner` subclass, registered by name in
:mod:`opid_gym.builtin` (``LEARNERS``) and reached lazily through ``opid_gym.LEARNERS``;
the shared math is in :mod:`learners.common`, the static skill library in
:mod:`learners.skills`.
"""
