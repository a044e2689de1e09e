"""A plan whose name holds a line break, stored before names were checked, still gets its
digests: the subject is built as one line. Over real SMTP (aiosmtpd)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from insights.services.digests import queue_digests, send_digest
from insights.services.retests import dispatch_due_retests, run_plan_retest
from planning.models import Plan

from .retest_data import seed_plan, set_previous_statuses

pytestmark = pytest.mark.django_db

UTC = dt.UTC
SLOT = dt.datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def test_a_plan_named_with_cr_lf_still_gets_its_digest(plan, cmo, smtp_server):
    with time_machine.travel(dt.datetime(2026, 3, 1, 13, 0, tzinfo=UTC), tick=False):
        plan.retest_cadence = "daily"
        plan.save()
    set_previous_statuses(seed_plan(plan))
    # As an older version, the admin or a data fix may have stored it: no validation.
    Plan.objects.filter(pk=plan.pk).update(name="FY2027\r\ngrowth plan\r\nBcc: all@example.com")
    with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
        (retest,) = dispatch_due_retests()
        run_plan_retest(retest.pk)
    (delivery,) = queue_digests(retest.pk)

    assert send_digest(delivery.pk) is True

    (message,) = smtp_server.messages
    assert message["Subject"] == "FY2027 growth plan Bcc: all@example.com: 2 assumptions changed"
    assert message["Bcc"] is None
    assert message.envelope_rcpt_tos == ["ana@example.com"]
    delivery.refresh_from_db()
    assert delivery.sent_at is not None and delivery.last_error == ""
