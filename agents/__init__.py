"""Agents: scripted checkers (``random``, ``expert``) and model backends (``hf``, ``vllm``, ``openai``)."""
