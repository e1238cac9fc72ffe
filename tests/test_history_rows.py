"""Issue 11 item 11: `history` shows traffic only for updates."""

from __future__ import annotations

import pytest

from mlserve import ops
from tests.fake_pulumi import fixture
from tests.fake_pulumi.fixture import Fake
from tests.test_ops import TARGET, make_spec

fake = fixture.fake


def test_history_shows_no_traffic_for_a_refresh_or_destroy(fake: Fake) -> None:
    ops.deploy(make_spec(weight=60), TARGET)
    fake.set(fail={"up": "quota exceeded"})
    with pytest.raises(Exception, match="quota exceeded"):
        ops.deploy(make_spec(weight=10), TARGET, reset_traffic=True)
    fake.set()
    ops.status(TARGET, refresh=True)  # records the failed deploy's 10% that is on disk
    ops.destroy(TARGET)
    rows = [
        (r.kind, r.result, r.traffic.weight if r.traffic else None) for r in ops.history(TARGET)
    ]
    assert rows == [
        ("destroy", "succeeded", None),
        ("refresh", "succeeded", None),
        ("update", "failed", 10),
        ("update", "succeeded", 60),
    ]
