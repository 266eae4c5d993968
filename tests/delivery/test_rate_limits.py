"""Rate limits per transport: sliding windows shared through the database, exact under
concurrent workers, slowed down by a quota refusal; set in Settings (our relay) and on the
customer form (with providers' presets); waiting messages shown in the Log and on Home."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

from sqlalchemy import func, select

from dashboard import reasons
from dashboard.extensions import db
from dashboard.models import Message, RateSlot, utcnow
from dashboard.services.core import settings
from dashboard.services.delivery import rate_limits
from dashboard.services.delivery.rate_limits import Policy, reserve


def test_a_window_allows_n_sends_then_names_the_moment_it_frees(app):
    """30 a minute: 30 reservations pass, the 31st gets the time the first leaves the
    window (a minute and its margin later); nothing is counted for the refused one."""
    policy = Policy("customer:1", 2, {"minute": 30})
    start = utcnow()
    granted = [reserve(policy, start + timedelta(seconds=i)) for i in range(30)]
    assert granted == [None] * 30
    wait = reserve(policy, start + timedelta(seconds=40))
    assert wait == start + timedelta(seconds=60 + rate_limits.window_margin(60))
    # the window slides: once the first send is older than the window, one more may go
    assert reserve(policy, wait) is None
    assert reserve(policy, wait) == start + timedelta(seconds=61 + rate_limits.window_margin(60))


def test_the_tightest_of_several_windows_decides(app):
    """A day cap binds before the minute's: 3 a day, 30 a minute."""
    policy = Policy("relay", 8, {"minute": 30, "day": 3})
    start = utcnow()
    assert [reserve(policy, start + timedelta(seconds=i)) for i in range(3)] == [None] * 3
    wait = reserve(policy, start + timedelta(minutes=5))
    assert wait == start + timedelta(days=1, seconds=rate_limits.window_margin(86400))


def test_an_unlimited_transport_is_never_stopped_and_keeps_no_slots(app):
    """No limits, no slow-down: every reservation passes and no slot is written."""
    policy = Policy("relay", 8, {})
    assert all(reserve(policy) is None for _ in range(50))
    assert db.session.scalar(select(func.count()).select_from(RateSlot)) == 0


def test_slots_older_than_every_window_are_dropped(app):
    """The slot log stays as long as its longest window needs (here: a second's worth)."""
    policy = Policy("relay", 8, {"second": 2})
    start = utcnow()
    for i in range(20):
        assert reserve(policy, start + timedelta(seconds=i)) is None
    assert db.session.scalar(select(func.count()).select_from(RateSlot)) <= 3


def test_concurrent_workers_never_exceed_the_limit(app):
    """Eight threads (each its own connection, as workers are) race for 20 sends each at a
    limit of 30 a minute: exactly 30 are granted, with 30 distinct sequence numbers."""
    policy = Policy("customer:7", 2, {"minute": 30})
    granted = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker():
        with app.app_context():
            barrier.wait()
            for _ in range(20):
                if reserve(policy) is None:
                    with lock:
                        granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(granted) == 30
    seqs = db.session.scalars(select(RateSlot.seq).where(RateSlot.key == "customer:7")).all()
    assert len(set(seqs)) == 30


def test_a_quota_refusal_pauses_then_halves_the_limits(app):
    """The first quota refusal pauses the transport for PAUSE_SECONDS and halves its limits
    for SLOWDOWN_MINUTES; refusals of sends already in flight do not deepen it; a later
    one does."""
    policy = Policy("customer:3", 2, {"minute": 30})
    started = utcnow()
    assert rate_limits.quota_refused(policy.key, started, "554 5.2.0 SubmissionQuotaExceeded")
    state = rate_limits.slowdown(policy.key)
    assert state.level == 1
    wait = reserve(policy)
    assert wait is not None and wait >= state.at + timedelta(seconds=29)
    # a send that began before the slow-down: not news
    assert not rate_limits.quota_refused(policy.key, started, "554 again")
    assert rate_limits.slowdown(policy.key).level == 1
    # after the pause, 15 a minute
    after = state.at + timedelta(seconds=rate_limits.PAUSE_SECONDS + 1)
    assert [reserve(policy, after + timedelta(seconds=i)) for i in range(15)] == [None] * 15
    assert reserve(policy, after + timedelta(seconds=20)) is not None
    # a send started after the slow-down began is refused again: deeper
    assert rate_limits.quota_refused(policy.key, utcnow(), "554 quota")
    assert rate_limits.slowdown(policy.key).level == 2
    assert rate_limits.effective({"minute": 30}, 2) == {"minute": 7}


def test_the_relay_policy_comes_from_settings_and_a_customers_from_its_fields(
        app, make_customer):
    """Relay: 8 lanes by default, limits from Settings. customer_smtp: 2 lanes by default,
    its own limits; a relay customer goes through the relay's policy."""
    assert rate_limits.relay_policy() == Policy("relay", 8, {})
    settings.put("relay_rate_limits", {"second": 20, "bogus": 3, "day": 0})
    settings.put("relay_lanes", 4)
    assert rate_limits.relay_policy() == Policy("relay", 4, {"second": 20})
    customer, _ = make_customer(sending_mode="customer_smtp", smtp_host="smtp.x.example",
                                from_address="a@x.example", rate_limits={"minute": 30})
    assert rate_limits.policy_for(customer) == Policy(f"customer:{customer.id}", 2,
                                                      {"minute": 30})
    standard, _ = make_customer()
    assert rate_limits.policy_for(standard).key == "relay"


SETTINGS_FORM = {
    "sender_notification_name": "Notifiche", "sender_notification_address":
    "notifiche@postino.example.com", "sender_registration_name": "Registrazione",
    "sender_registration_address": "registration@postino.example.com",
    "bounce_domain": "bounces.postino.example.com", "retention_days": "30",
    "max_age_hours": "24", "retry_schedule": "1, 5, 15", "soft_bounce_threshold": "3",
    "soft_bounce_window_days": "7", "soft_suppression_days": "7",
    "billing_window_days": "90", "relay_lanes": "12", "relay_limit_second": "",
    "relay_limit_minute": "600", "relay_limit_hour": "", "relay_limit_day": "100000",
}


def test_settings_save_the_relays_lanes_and_limits(admin_client):
    """The Settings page shows the fields and saves them; a bad limit answers 422."""
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert 'name="relay_lanes"' in page and 'name="relay_limit_minute"' in page
    bad = {**SETTINGS_FORM, "relay_limit_minute": "-3", "relay_lanes": "0"}
    response = admin_client.post("/settings/", data=bad, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert response.get_data(as_text=True).count('class="field-error"') == 2
    assert settings.get("relay_lanes") == 8
    assert admin_client.post("/settings/", data=SETTINGS_FORM).status_code == 302
    assert settings.get("relay_lanes") == 12
    assert settings.get("relay_rate_limits") == {"minute": 600, "day": 100000}
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert 'value="600"' in page and 'value="100000"' in page


SMTP_FORM = {
    "sending_mode": "customer_smtp", "from_address": "notifiche@cliente.example",
    "from_name": "Cliente", "smtp_host": "smtp.office365.com", "smtp_port": "587",
    "smtp_security": "starttls", "smtp_auth": "login", "smtp_username": "notifiche@cliente.example",
    "smtp_password": "Very-Secret-42", "smtp_timeout": "", "smtp_verify_tls": ["0", "1"],
    "smtp_ca_pem": "", "smtp_lanes": "", "rate_preset": "microsoft365",
    "rate_limit_second": "", "rate_limit_minute": "", "rate_limit_hour": "",
    "rate_limit_day": "", "minutes": "30", "ticket": "T-1",
}


def test_the_customer_form_takes_a_providers_preset_or_custom_limits(admin_client,
                                                                      make_customer):
    """Microsoft 365's preset stores 30 a minute and 10,000 a day; custom stores the typed
    values; lanes left empty keep the default; a bad value answers 422, nothing saved."""
    customer, _ = make_customer()
    page = admin_client.get(f"/customers/{customer.code}/mode?sending_mode=customer_smtp",
                            headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'name="rate_preset"' in page and "Microsoft 365" in page and 'name="smtp_lanes"' in page
    response = admin_client.post(f"/customers/{customer.code}", data=SMTP_FORM,
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200, response.get_data(as_text=True)[:1500]
    db.session.refresh(customer)
    assert customer.rate_limits == {"minute": 30, "day": 10000}
    assert customer.rate_preset == "microsoft365" and customer.smtp_lanes is None
    page = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert 'value="10000"' in page
    bad = {**SMTP_FORM, "smtp_password": "", "rate_preset": "custom", "rate_limit_second": "x",
           "smtp_lanes": "100"}
    response = admin_client.post(f"/customers/{customer.code}", data=bad,
                                 headers={"HX-Request": "true"})
    assert response.status_code == 422
    db.session.refresh(customer)
    assert customer.rate_limits == {"minute": 30, "day": 10000}
    custom = {**SMTP_FORM, "smtp_password": "", "rate_preset": "custom",
              "rate_limit_second": "5", "smtp_lanes": "1"}
    response = admin_client.post(f"/customers/{customer.code}", data=custom,
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200, response.get_data(as_text=True)[:1500]
    db.session.refresh(customer)
    assert customer.rate_limits == {"second": 5} and customer.smtp_lanes == 1
    none = {**custom, "rate_preset": "", "rate_limit_second": ""}
    admin_client.post(f"/customers/{customer.code}", data=none, headers={"HX-Request": "true"})
    db.session.refresh(customer)
    assert customer.rate_limits is None and customer.rate_preset is None


def _waiting_message(customer, code: str, minutes: int) -> Message:
    from dashboard.models import new_public_id

    message = Message(public_id=new_public_id(), customer_id=customer.id, event="order_closed",
                      recipient=f"w{minutes}@example.com", subject="Ordine", status="queued",
                      status_reason=reasons.encode(code),
                      next_attempt_at=utcnow() + timedelta(minutes=minutes))
    db.session.add(message)
    db.session.commit()
    return message


def test_messages_waiting_for_a_rate_limit_show_in_the_log_and_on_home(
        admin_client, make_customer):
    """Queued with the rate-limit reason: the Log says so with the expected time, Home
    counts them per transport with the next and last expected times (English, Italian)."""
    customer, _ = make_customer(code="ACME", sending_mode="customer_smtp",
                                smtp_host="smtp.x.example", from_address="a@x.example")
    relay_customer, _ = make_customer()
    first = _waiting_message(customer, rate_limits.CUSTOMER_WAITING, 3)
    _waiting_message(customer, rate_limits.CUSTOMER_WAITING, 9)
    _waiting_message(relay_customer, rate_limits.RELAY_WAITING, 1)
    summary = rate_limits.waiting()
    assert [(w.transport, w.count) for w in summary] == [("relay", 1), ("ACME", 2)]
    log = admin_client.get("/log/?q=w3@example.com").get_data(as_text=True)
    assert "waiting for the rate limit of the customer&#39;s own server" in log
    assert first.next_attempt_at.strftime("%Y-%m-%d %H:%M") in log
    home = admin_client.get("/").get_data(as_text=True)
    assert 'id="rate-waiting"' in home
    assert "waiting for the rate limit of our relay" in home
    waiting = re.search(r'id="rate-waiting">(.*?)</ul>', home, re.S).group(1)
    assert "<strong>2</strong> waiting for the rate limit of ACME" in waiting
    assert "last expected at" in waiting
    italian = admin_client.get("/", headers={"Accept-Language": "it"}).get_data(as_text=True)
    assert "limite" in italian


def test_the_cli_sets_a_customers_lanes_and_limits(app, runner, make_customer):
    """`flask customer-settings` takes lanes, a preset or per-window limits, like the form."""
    customer, _ = make_customer(sending_mode="customer_smtp", smtp_host="smtp.x.example",
                                from_address="a@x.example", smtp_auth="none")
    base = ["customer-settings", customer.code, "--mode", "customer_smtp", "--minutes", "5"]
    result = runner.invoke(args=[*base, "--smtp-lanes", "1", "--rate-preset", "google_workspace"])
    assert result.exit_code == 0, result.output
    db.session.refresh(customer)
    assert customer.smtp_lanes == 1 and customer.rate_limits == {"day": 2000}
    result = runner.invoke(args=[*base, "--rate-limit-second", "14"])
    assert result.exit_code == 0, result.output
    db.session.refresh(customer)
    assert customer.rate_limits == {"second": 14} and customer.rate_preset == "custom"
    result = runner.invoke(args=[*base, "--rate-limit-minute", "lots"])
    assert result.exit_code == 2 and "--rate-limit-minute" in result.output
