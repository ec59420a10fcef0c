"""``keypad``: a toy environment small enough for the in-process ``tiny`` model to learn on a CPU."""
