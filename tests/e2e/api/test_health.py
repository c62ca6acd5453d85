"""GET /api/health over the shared `world` of conftest.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.support.api import (
    call,
)


# -- GET /api/health -----------------------------------------------------------------------------------
def test_health_ok_with_age_and_count_and_no_customer_data(world):
    response = call("health")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    payload = json.loads(response.get_body())
    assert payload == {
        "status": "ok",
        "generatedAt": world.latest["generatedAt"],
        "ageHours": payload["ageHours"],
        "customerCount": len(world.customers),
        "staleAfterHours": 26.0,
    }
    assert 0 <= payload["ageHours"] < 1
    text = response.get_body().decode()
    assert not any(c["id"] in text or c["companyProfile"]["domain"] in text for c in world.customers)
    assert "snapshots/" not in text


def test_health_is_stale_after_the_setting(world, env):
    env.setenv("HEALTH_STALE_AFTER_HOURS", "0.01")
    env.setattr("shared.api.health.utc_now", lambda: datetime.now(UTC) + timedelta(hours=1))
    response = call("health")
    payload = json.loads(response.get_body())
    assert response.status_code == 503
    assert payload["status"] == "stale"
    assert payload["ageHours"] >= 1
