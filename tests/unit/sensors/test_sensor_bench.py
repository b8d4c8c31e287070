"""Micro-benchmark: the fleet runner needs ~1,000 readings/s from 10,000 DERs on a shared
2-core machine, so one pass over the whole fleet (step + encode) must stay far below 10 s.
The bound here (1.5 s) is generous; best of three passes absorbs noise from other load."""

from __future__ import annotations

import time

from ingest import schema
from sensors_sim.models import make_fleet

N = 10_000


def test_10k_der_steps_and_encodes_under_1_5_s():
    fleet = make_fleet(N, seed=7)
    t0 = 1_750_521_600_000 + 15 * 3600 * 1000
    for d in fleet:
        d.read(t0)                                  # first step: state initialisation
    best = float("inf")
    size = 0
    for k in range(1, 4):
        t = t0 + 10_000 * k
        start = time.perf_counter()
        for d in fleet:
            r = d.read(t)
            size += len(schema.encode(r))
        best = min(best, time.perf_counter() - start)
    print(f"\n{N} DER step+encode: best {best:.3f} s ({best / N * 1e6:.1f} µs/DER), "
          f"mean size {size / (3 * N):.0f} B")
    assert best < 1.5
    assert size / (3 * N) < 330
