"""Skills: the static skill library (baselines) and OPID's hindsight skills."""
