"""Project-local runtime state: generated credentials and run artefacts under ``.state/``.

Credentials are never committed: the first ``make up`` generates one random password per
RabbitMQ user and keeps it in ``.state/secrets.json`` (mode 0600). ``VPP_RABBITMQ_<USER>_PASSWORD``
overrides a generated one, e.g. to share a broker between checkouts.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    path = Path(os.environ.get("VPP_STATE_DIR", ROOT / ".state"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _env_name(user: str) -> str:
    return f"VPP_RABBITMQ_{user.upper().replace('-', '_')}_PASSWORD"


def passwords(users: Iterable[str]) -> dict[str, str]:
    """Password per user: env override, else the stored one, else a newly generated one."""
    path = state_dir() / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    result: dict[str, str] = {}
    for user in users:
        if override := os.environ.get(_env_name(user)):
            result[user] = override
            continue
        if user not in stored:
            stored[user] = secrets.token_urlsafe(18)
            changed = True
        result[user] = stored[user]
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(path)
    return result
