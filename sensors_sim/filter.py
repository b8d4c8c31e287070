"""Fig. 4 "Filter": optional pre-processing between a DER and the publisher.

Two reductions, per DER, applied to the *envelope-complete* reading before it gets its
sequence number:

* exact-duplicate dropping: a reading with the same ``ts_ms`` and the same content as the last
  one *sent* for that DER (a retransmission, a gateway polling faster than the device updates)
  is dropped;
* deadband suppression: a reading whose every measurement is within the field's deadband of
  the last *sent* reading is suppressed. Comparing against the last sent reading (not the last
  seen) means slow drift accumulates and is eventually sent. A reading always passes if its
  quality changed, a non-numeric field changed (connector status, session, running), a field
  appeared or disappeared, or the DER has been silent for ``max_silence_s`` (a heartbeat, so the
  twin can tell "steady" from "dead").

Sequence numbers: the filter sees readings with ``seq = -1`` and :meth:`DER.read` assigns the
next number only to readings the filter passes. So ``seq`` counts *published* readings without
gaps, and the consumer can treat any gap as loss in transit; suppression shows as a longer
interval in ``ts_ms``, bounded by ``max_silence_s``.

Cumulative registers (``e_wh``, ``e_imp_wh``, ``session_wh``) are not compared by default:
they grow whenever the DER produces, so comparing them would defeat the deadband, and the next
sent reading carries their value anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.schema import ENVELOPE_NAMES

# Absolute deadbands in the field's unit: about the resolution an operator cares about for a
# small DER (and well above sensor noise, so noise alone does not defeat the filter).
DEFAULT_DEADBANDS: dict[str, float] = {
    "p_w": 50.0,
    "q_var": 100.0,
    "v_v": 1.0,
    "i_a": 0.5,
    "f_hz": 0.02,
    "t_c": 0.5,
    "irr_wm2": 10.0,
    "t_mod_c": 0.5,
    "dc_w": 50.0,
    "wind_ms": 0.5,
    "rotor_rpm": 2.0,
    "flow_m3s": 0.02,
    "head_m": 0.05,
    "soc_pct": 0.5,
    "soh_pct": 0.1,
    "p_max_chg_w": 100.0,
    "p_max_dis_w": 100.0,
    "i_offered_a": 0.5,
    "fuel_pct": 0.5,
    "fuel_lph": 0.5,
}
DEFAULT_IGNORED: frozenset[str] = frozenset({"e_wh", "e_imp_wh", "session_wh"})
_SKIP = frozenset(ENVELOPE_NAMES)  # quality is compared separately


@dataclass(frozen=True)
class FilterConfig:
    deadbands: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DEADBANDS))
    ignored: frozenset[str] = DEFAULT_IGNORED
    max_silence_s: float = 60.0
    drop_duplicates: bool = True
    deadband: bool = True

    def __post_init__(self) -> None:
        if not self.max_silence_s > 0:
            raise ValueError(f"FilterConfig.max_silence_s: must be > 0 (got {self.max_silence_s})")
        for k, v in self.deadbands.items():
            if not (isinstance(v, int | float) and v >= 0):
                raise ValueError(f"FilterConfig.deadbands.{k}: must be a number >= 0 (got {v!r})")


class Filter:
    """Stateful per-DER filter; one instance can serve a whole fleet (keyed by ``der_id``)."""

    def __init__(self, config: FilterConfig | None = None) -> None:
        self.config = cfg = config or FilterConfig()
        self._deadbands = dict(cfg.deadbands)
        self._ignored = cfg.ignored
        self._silence_ms = int(cfg.max_silence_s * 1000)
        self._last: dict[str, dict[str, Any]] = {}
        self.passed = 0
        self.suppressed_deadband = 0
        self.dropped_duplicate = 0
        self.heartbeats = 0

    def offer(self, reading: dict[str, Any]) -> bool:
        """True if the reading should be published (and becomes the DER's last sent one)."""
        der_id = reading["der_id"]
        last = self._last.get(der_id)
        if last is not None:
            cfg = self.config
            if cfg.drop_duplicates and reading["ts_ms"] == last["ts_ms"] \
                    and self._same(reading, last):
                self.dropped_duplicate += 1
                return False
            if cfg.deadband and self._within_deadband(reading, last):
                if reading["ts_ms"] - last["ts_ms"] < self._silence_ms:
                    self.suppressed_deadband += 1
                    return False
                self.heartbeats += 1        # unchanged, but sent so the twin sees it alive
        self._last[der_id] = reading
        self.passed += 1
        return True

    @staticmethod
    def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return len(a) == len(b) and all(
            k == "seq" or b.get(k, _MISSING) == v for k, v in a.items()
        )

    def _within_deadband(self, r: Mapping[str, Any], last: Mapping[str, Any]) -> bool:
        if r["quality"] != last["quality"] or len(r) != len(last):
            return False
        bands = self._deadbands
        ignored = self._ignored
        for k, v in r.items():
            if k in _SKIP or k in ignored:
                continue
            old = last.get(k, _MISSING)
            if old is _MISSING:
                return False
            band = bands.get(k)
            if band is None or type(v) is bool or type(v) is str:
                if v != old:
                    return False
            elif abs(v - old) > band:
                return False
        return True

    def forget(self, der_id: str) -> None:
        """Drop a DER's state (it left the fleet; its next reading passes)."""
        self._last.pop(der_id, None)

    def stats(self) -> dict[str, int]:
        return {
            "passed": self.passed,
            "suppressed_deadband": self.suppressed_deadband,
            "dropped_duplicate": self.dropped_duplicate,
            "heartbeats": self.heartbeats,
        }


_MISSING = object()
