"""The business-impact page counts UTC days, and says so in the user's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine
from django.urls import reverse

from recsite.models import UserPreference


def test_the_impact_page_uses_utc_days_and_says_where_they_start_for_the_user(client_as, personas):
    UserPreference.objects.create(user=personas["marketer"], time_zone="Asia/Tokyo")
    # 20:00 UTC on 30 Nov is already 1 Dec in Tokyo; the figures' last day is still 30 Nov.
    with time_machine.travel(datetime(2026, 11, 30, 20, 0, tzinfo=UTC), tick=False):
        response = client_as("marketer").get(reverse("impact"), {"days": "7"})
    assert response.context["day_to"].isoformat() == "2026-11-30"
    assert response.context["day_from"].isoformat() == "2026-11-24"
    html = response.content.decode()
    assert "Days are UTC days" in html
    assert "from 09:00 to 09:00 the next day in your time zone (Asia/Tokyo)" in html


def test_a_user_in_utc_is_not_told_about_time_zones(client_as):
    with time_machine.travel(datetime(2026, 11, 30, 20, 0, tzinfo=UTC), tick=False):
        html = client_as("analyst").get(reverse("impact")).content.decode()
    assert "Days are UTC days" in html and "in your time zone" not in html
