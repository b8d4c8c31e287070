"""The gateway's control-plane bookkeeping without a broker: only the current control
connection attempt may drop the connection, and an attempt that hears no routing table is
replaced by a new one."""

from __future__ import annotations

from infra.topology import load_topology
from sensors_sim.gateway import Gateway
from sensors_sim.models import make_fleet


class _Conn:
    def __init__(self) -> None:
        self.is_open = True
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        self.is_open = False


def _gateway() -> Gateway:
    return Gateway(load_topology(), make_fleet(3, seed=1))


def test_a_superseded_attempt_cannot_close_the_current_connection():
    gw = _gateway()
    gw._control_attempt = 2
    gw._control = conn = _Conn()
    gw._drop_control(1, "control_channel_closed", error="old")
    assert conn.closed == 0 and conn.is_open
    gw._drop_control(2, "control_consumer_cancelled", consumer="ctag")
    assert conn.closed == 1


def test_an_attempt_that_hears_no_table_is_replaced(monkeypatch):
    gw = _gateway()
    started: list[int] = []
    monkeypatch.setattr(gw, "_connect_control", lambda: started.append(1))
    gw._control_attempt = 4
    gw._control = conn = _Conn()
    gw._control_heard = True
    gw._control_watchdog(4)        # heard a table: nothing to do
    gw._control_heard = False
    gw._control_watchdog(3)        # superseded: ignored
    assert started == [] and conn.closed == 0
    gw._control_watchdog(4)
    assert started == [1] and conn.closed == 1 and gw._control is None
