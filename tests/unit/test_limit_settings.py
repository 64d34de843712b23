"""The abuse limits' settings refuse values that would refuse legitimate traffic."""

from __future__ import annotations

import pytest

from labledger.config import Settings
from labledger.core.errors import ConfigError


def test_bytes_in_flight_below_one_full_webhook_is_refused_naming_both_settings() -> None:
    """A budget smaller than the body limit would 503 every full-size webhook: refused."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(
            {"LABLEDGER_MAX_BODY_BYTES": "1000", "LABLEDGER_WEBHOOK_BYTES_IN_FLIGHT": "999"}
        )
    message = str(refused.value)
    assert "LABLEDGER_WEBHOOK_BYTES_IN_FLIGHT" in message
    assert "LABLEDGER_MAX_BODY_BYTES" in message and "\n" not in message


@pytest.mark.parametrize(
    "name", ["API_CONCURRENCY", "WEBHOOK_CONCURRENCY", "FEED_MAX_WAITERS", "MAX_API_BODY_BYTES"]
)
def test_zero_capacity_is_refused_naming_the_setting(name: str) -> None:
    """A lane, waiter cap or body limit of zero would refuse everything: refused at start."""
    with pytest.raises(ConfigError, match=f"LABLEDGER_{name}"):
        Settings.from_env({f"LABLEDGER_{name}": "0"})
