"""ScienceWorld: elementary-science tasks in a text simulator, through the `scienceworld` package.

Modules: :mod:`~environments.sciworld.splits` (the reference's L0/L1/L2 task/variation
splits and the task names), :mod:`~environments.sciworld.prompt` (the prompt) and
:mod:`~environments.sciworld.env` (the Gymnasium environment). See docs/sciworld.md.
"""
