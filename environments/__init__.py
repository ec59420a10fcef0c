"""Environment families: one sub-package each (``alfworld``, ``webshop``, ``searchqa``).

Each family's environment is a :class:`opid_gym.TextEnv`; its ids are listed in
``opid_gym/builtin.py``.
"""
