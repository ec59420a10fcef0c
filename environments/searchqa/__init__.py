"""Search-based QA: seven data sets, a passage retriever, exact-match reward."""

from environments.searchqa.answers import exact_match, normalize_answer
from environments.searchqa.datasets import DATASETS, Question, eval_questions, train_questions

__all__ = ["DATASETS", "Question", "eval_questions", "exact_match", "normalize_answer", "train_questions"]
