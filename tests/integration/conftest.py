from __future__ import annotations

import pytest

from infra import health
from infra.platform import Platform
from infra.topology import Topology


def _all_active_healthy(p: Platform) -> bool:
    rows = p.status()
    return all(r.health == "ok" for r in rows if r.node.initial_state == "active")


@pytest.fixture(scope="session")
def platform(topo: Topology):
    p = Platform(topo)
    was_up = _all_active_healthy(p)
    if not was_up:
        p.up(progress=lambda msg: print(msg, flush=True))
    p.was_up_before_tests = was_up  # type: ignore[attr-defined]
    apps = health.master_state(topo).get("activeapps") or []
    if apps:
        names = ", ".join(str(a.get("name")) for a in apps)  # type: ignore[union-attr]
        pytest.exit(f"Spark applications already hold the workers ({names}); the tests need an "
                    "idle platform: stop them (or `make down`) and re-run", returncode=3)
    yield p
    if not was_up and p.project_containers():
        p.down(progress=lambda _m: None)


@pytest.fixture()
def dormant(platform: Platform):
    """Hands out dormant nodes and puts each back to sleep after the test, whatever happened."""
    used: list[str] = []

    def take(name: str) -> str:
        used.append(name)
        return name

    yield take
    for name in used:
        platform.sleep(name, enforce_min=False)


@pytest.fixture(scope="session")
def passwords(platform: Platform) -> dict[str, str]:
    return platform.passwords


@pytest.fixture(scope="session")
def monitoring(platform: Platform, topo: Topology):
    """The host services of the monitoring path (writer, collector); stopped again at the end
    only if this session started them."""
    from infra import services
    from ingest.topology import declare_channel

    declare_channel(topo, "channel-0")
    started = [svc for svc in services.SERVICES
               if svc.on_up and not services.status(topo, svc).running]
    for svc in started:
        services.start(svc)
    yield
    for svc in started:
        services.stop(svc)
