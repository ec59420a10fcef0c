"""OPID's hindsight analyzer: one finished trajectory → episode summary, episode skill, step skills.

* :mod:`.parse` — :class:`Analysis` and the tolerant parser of an analyzer's answer;
* :mod:`.prompt` — the analyzer prompt (the project's own wording);
* :mod:`.rules` — ``hindsight-rules``, the deterministic analyzer that needs no model;
* :mod:`.oracle` — ``oracle``, an ablation that reads the environment's expert (not OPID's method);
* :mod:`.service` — :class:`Analyzer`: backends (OpenAI-compatible, local ``hf:``/``vllm:``,
  the policy itself), bounded retries, the per-run cache, usage statistics.
"""

from learners.skills.analyzer.parse import Analysis, AnalysisParseError, parse_analysis
from learners.skills.analyzer.prompt import build_analysis_messages
from learners.skills.analyzer.oracle import oracle_analysis
from learners.skills.analyzer.rules import rules_analysis, step_findings
from learners.skills.analyzer.service import (
    AnalysisCache, AnalysisResult, Analyzer, AnalyzerConfigError, AnalyzerSettings, AnalyzerStats,
)

__all__ = [
    "Analysis", "AnalysisCache", "AnalysisParseError", "AnalysisResult", "Analyzer", "AnalyzerConfigError",
    "AnalyzerSettings", "AnalyzerStats", "build_analysis_messages", "oracle_analysis", "parse_analysis", "rules_analysis",
    "step_findings",
]
