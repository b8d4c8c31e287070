"""AutoDiagn-style diagnoser (Alg. 2, Fig. 6): metrics window in, RCA labels with evidence out.

Pure: no network, no clock, no files except the rules loader. A service around it queries
InfluxDB, builds a window (:func:`build_window`), calls :meth:`Engine.evaluate` (improved mode,
default) or :func:`diagnose_paper` (Alg. 2 as published), and publishes/writes the diagnoses.
"""

from __future__ import annotations

from .engine import Engine, EngineState, RuleState
from .labels import Diagnosis, Evidence, RcaLabel, WindowSpan
from .paper import PaperThresholds, alg2_label, diagnose_paper
from .rules import RulesError, RuleSet, load_rules, parse_rules
from .stragglers import (
    Straggler,
    autodiagn_stragglers,
    node_rates,
    node_stragglers,
    robust_stragglers,
    stage_relative_node_stragglers,
)
from .window import MetricsWindow, WindowError, build_window, points_from_rows

__all__ = [
    "Diagnosis",
    "Engine",
    "EngineState",
    "Evidence",
    "MetricsWindow",
    "PaperThresholds",
    "RcaLabel",
    "RuleSet",
    "RuleState",
    "RulesError",
    "Straggler",
    "WindowError",
    "WindowSpan",
    "alg2_label",
    "autodiagn_stragglers",
    "build_window",
    "diagnose_paper",
    "load_rules",
    "node_rates",
    "node_stragglers",
    "parse_rules",
    "points_from_rows",
    "robust_stragglers",
    "stage_relative_node_stragglers",
]
