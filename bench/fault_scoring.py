"""Scoring of the fault-injection bench (pure: plain dataclasses in, rows and numbers out).

A *window* is one injected fault (or none) watched by its own diagnoser. It expects some
outputs, each a label class with the node it must name (or any node), may *allow* others that
are not wrong for that fault, and holds every output the diagnoser emitted in it. Label classes
are the RCA tags of Alg. 2 (``up_cl``, ``up_cc``, ``down_cl``, ``down_cc``), ``none`` (the
window emitted no scale label at all: the paper's label 0 / reliable stage) and ``straggler``
(a node flagged by the straggler detectors, Fig. 11).

Per window and expected output: a true positive when an emitted output matches it (same class,
and the same first-named node when a node is expected), else a false negative. Per window and
distinct emitted (class, node): a false positive when it matches nothing expected or allowed.
Precision and recall per class are summed over the windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from diagnoser.labels import RcaLabel

NONE = RcaLabel.NO_ACTION.tag
STRAGGLER = "straggler"
SCALE_LABELS = tuple(lab.tag for lab in RcaLabel if lab is not RcaLabel.NO_ACTION)
LABELS = (*SCALE_LABELS, NONE, STRAGGLER)
PAPER_NAMES = {**{lab.tag: lab.paper_name for lab in RcaLabel}, STRAGGLER: "straggler"}
OUTCOME_FIELDS = ("fault", "repeat", "label", "paper_label", "expected", "expected_node",
                  "emitted_nodes", "evaluations", "tp", "fp", "fn", "verdict", "first_s")
LABEL_FIELDS = ("label", "paper_label", "tp", "fp", "fn", "precision", "recall")


@dataclass(frozen=True)
class Expect:
    """An output a window should emit: ``label``, naming ``node`` first (None: any node)."""

    label: str
    node: str | None = None

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label: {self.label!r} is not one of {', '.join(LABELS)}")

    def matches(self, obs: Observation) -> bool:
        return obs.label == self.label and (self.node is None or obs.node == self.node)

    def describe(self) -> str:
        return f"{self.label}@{self.node}" if self.node else self.label


@dataclass(frozen=True)
class Observation:
    """One output of one evaluation: a scale label (``node`` = the first it names) or a
    straggler (``node`` = the slow node). ``time`` in epoch seconds."""

    time: float
    label: str
    node: str | None = None
    rule: str = ""


@dataclass(frozen=True)
class Window:
    fault: str
    repeat: int
    start: float                     # when the fault was injected (epoch s)
    end: float                       # end of the observation
    expected: tuple[Expect, ...]
    observed: tuple[Observation, ...] = ()
    allowed: tuple[Expect, ...] = ()

    def emitted(self) -> tuple[Observation, ...]:
        """What the window emitted, with a ``none`` output when no scale label came at all."""
        inside = tuple(o for o in self.observed if o.time <= self.end)
        if any(o.label in SCALE_LABELS for o in inside):
            return inside
        return (*inside, Observation(self.end, NONE))


@dataclass(frozen=True)
class Outcome:
    """One (window, label class) row: what was expected, what came, how it scores."""

    fault: str
    repeat: int
    label: str
    expected_node: str
    expected: bool
    emitted_nodes: tuple[str, ...]
    evaluations: int                 # evaluations that emitted this class
    tp: int
    fp: int
    fn: int
    allowed: bool
    first_s: float | None            # first matching output (TP) or first output, after start

    @property
    def verdict(self) -> str:
        parts = [name for name, n in (("tp", self.tp), ("fn", self.fn), ("fp", self.fp)) if n]
        return "+".join(parts) or ("allowed" if self.allowed else "")

    def row(self) -> dict[str, Any]:
        return {"fault": self.fault, "repeat": self.repeat, "label": self.label,
                "paper_label": PAPER_NAMES[self.label], "expected": int(self.expected),
                "expected_node": self.expected_node,
                "emitted_nodes": " ".join(self.emitted_nodes),
                "evaluations": self.evaluations, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "verdict": self.verdict,
                "first_s": None if self.first_s is None else round(self.first_s, 1)}


def score_window(w: Window) -> list[Outcome]:
    """One outcome per label class that was expected or emitted in ``w``, in :data:`LABELS`
    order."""
    emitted = w.emitted()
    out = []
    for label in LABELS:
        exp = [e for e in w.expected if e.label == label]
        obs = sorted((o for o in emitted if o.label == label), key=lambda o: o.time)
        if not exp and not obs:
            continue
        tp = sum(1 for e in exp if any(e.matches(o) for o in obs))
        wrong = {o.node for o in obs
                 if not any(e.matches(o) for e in (*w.expected, *w.allowed))}
        good = [o for o in obs if any(e.matches(o) for e in exp)]
        first = (good or obs)[0].time - w.start if (good or obs) and label != NONE else None
        out.append(Outcome(
            w.fault, w.repeat, label, " ".join(e.node or "any" for e in exp if label != NONE),
            bool(exp),
            tuple(sorted({o.node for o in obs if o.node})),
            len({o.time for o in obs}) if label != NONE else 0,
            tp, len(wrong), len(exp) - tp,
            bool(obs) and not wrong and not exp, first))
    return out


def first_correct_s(w: Window) -> float | None:
    """Seconds from the injection to the first output matching an expectation (None: never;
    ``none`` only shows at the end of a window, so it has no time)."""
    times = [o.time - w.start for o in w.emitted() if o.label != NONE
             and any(e.matches(o) for e in w.expected)]
    return min(times) if times else None


@dataclass(frozen=True)
class LabelScore:
    label: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def row(self) -> dict[str, Any]:
        return {"label": self.label, "paper_label": PAPER_NAMES[self.label], "tp": self.tp,
                "fp": self.fp, "fn": self.fn, "precision": _round(self.precision),
                "recall": _round(self.recall)}


def per_label(outcomes: Iterable[Outcome]) -> list[LabelScore]:
    """Summed over windows, one score per class that was expected or emitted at least once."""
    sums: dict[str, list[int]] = {}
    for o in outcomes:
        s = sums.setdefault(o.label, [0, 0, 0])
        s[0] += o.tp
        s[1] += o.fp
        s[2] += o.fn
    return [LabelScore(lab, *sums[lab]) for lab in LABELS if lab in sums]


@dataclass(frozen=True)
class FaultScore:
    fault: str
    windows: int
    detected: int                    # windows with every expectation met
    first_correct_s: tuple[float, ...]

    @property
    def median_first_s(self) -> float | None:
        return median(self.first_correct_s) if self.first_correct_s else None


def per_fault(windows: Sequence[Window]) -> list[FaultScore]:
    """Per fault, in first-seen order: how many windows met all their expectations and the
    time to the first correct output of each window that had one."""
    faults = list(dict.fromkeys(w.fault for w in windows))
    out = []
    for f in faults:
        mine = [w for w in windows if w.fault == f]
        met = sum(1 for w in mine if all(o.fn == 0 for o in score_window(w)))
        times = tuple(t for t in (first_correct_s(w) for w in mine) if t is not None)
        out.append(FaultScore(f, len(mine), met, times))
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
