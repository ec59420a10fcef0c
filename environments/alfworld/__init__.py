"""ALFWorld on the real TextWorld engine (``alfworld`` + ``textworld`` packages)."""

from environments.alfworld.games import TASK_TYPES, Game, list_games

__all__ = ["TASK_TYPES", "Game", "list_games"]
