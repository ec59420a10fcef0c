"""Learners: one module per training algorithm, plus the shared math in ``common``.

Each module defines a :class:`opid_gym.learner.Learner` subclass, registered by name in
:mod:`opid_gym.builtin` (``LEARNERS``) and reached lazily through ``opid_gym.LEARNERS``.
"""
