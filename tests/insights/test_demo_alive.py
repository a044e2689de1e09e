"""The demo opens alive (issue "Assumptions through time"): a newcomer's demo has been re-tested
once and carries each assumption's history, so the board shows assumptions that hold, are at
risk, are broken and drift, and the change the demo's customers go through in their last quarter
(August–October 2026: repeat purchases fall) is caught as drift while its test still holds.

One test on the full-size demo (10,000 customers, 154k events): the drift needs the demo's real
sample sizes to stand out from noise."""

from __future__ import annotations

import datetime as dt

import pytest

from insights import demo
from insights.models import AssumptionHistory, AssumptionRun
from planning.models import Assumption

pytestmark = pytest.mark.django_db


def test_the_demo_opens_with_verdicts_histories_and_an_early_warning():
    plan = demo.load_demo(published_password=True).plan
    tested = Assumption.objects.filter(choice__plan=plan).exclude(metric="")
    statuses = set(tested.values_list("status", flat=True))
    assert {"holds", "at_risk", "broken"} <= statuses
    assert "untested" not in statuses  # every test ran once
    assert AssumptionRun.objects.filter(plan=plan).count() == tested.count()

    histories = AssumptionHistory.objects.filter(plan=plan, status="ready")
    assert histories.count() == tested.count()
    # 18 months of data: May 2025 … October 2026, each month's end and as_of.
    assert {len(h.points) for h in histories} <= {17, 18} and max(
        len(h.points) for h in histories
    ) == 18

    drifting = list(tested.exclude(drift_since=None))
    assert drifting, "the last quarter's change is not caught"
    early = [a for a in drifting if a.status in {"holds", "at_risk"}]
    assert early, "every drift is already broken: no early warning"
    repeat = next(a for a in early if a.metric == "repeat_rate")
    assert repeat.drift_direction == "down"
    assert dt.date(2026, 5, 1) <= repeat.drift_since <= dt.date(2026, 10, 1)
    assert repeat.drift_message.startswith("Repeat rate has been falling since")
