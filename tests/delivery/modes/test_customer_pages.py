"""Customer pages and Settings: validation (422, nothing saved), audit before → after,
support read-only, switches, API keys, the write-only password."""
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import ApiKey, AuditEntry, Message, Setting
from dashboard.services.core import settings

SMTP_FORM = {
    "sending_mode": "customer_smtp", "from_address": "notifiche@cliente.example",
    "from_name": "Cliente", "smtp_host": "smtp.cliente.example", "smtp_port": "587",
    "smtp_security": "starttls", "smtp_auth": "login", "smtp_username": "notifiche@cliente.example",
    "smtp_password": "Very-Secret-42", "smtp_timeout": "", "smtp_verify_tls": ["0", "1"],
    "smtp_ca_pem": "",
    "minutes": "30", "ticket": "T-5120",  # a change to customer_smtp is billable
}


def audits(action: str) -> list[AuditEntry]:
    """Audit entries of one action, oldest first."""
    return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                              .order_by(AuditEntry.id)).all()


def test_customers_list_and_page_show_the_mode(admin_client, make_customer):
    """The list links each customer; its page shows the From used per event in standard."""
    customer, _ = make_customer(name="Bar Centrale")
    listing = admin_client.get("/customers/").get_data(as_text=True)
    assert "Bar Centrale" in listing and f"/customers/{customer.code}" in listing
    page = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert "notification@postino.example.com" in page and "registration@postino.example.com" in page


def test_switching_the_radio_swaps_the_mode_fields(admin_client, make_customer):
    """The htmx swap answers the fields of the chosen mode with its caveat."""
    customer, _ = make_customer()
    body = admin_client.get(f"/customers/{customer.code}/mode?sending_mode=customer_smtp",
                            headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="mode-fields"' in body and 'name="smtp_host"' in body and "<html" not in body
    body = admin_client.get(f"/customers/{customer.code}/mode?sending_mode=custom_from",
                            headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'name="from_address"' in body and 'name="smtp_host"' not in body
    assert 'id="check-dns"' in body


def test_saving_customer_smtp_encrypts_the_password_and_audits_it_as_changed(
        admin_client, make_customer):
    """The stored value is not the password, the audit says '(changed)', the page never
    shows the password back."""
    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}", data=SMTP_FORM,
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert "Very-Secret-42" not in response.get_data(as_text=True)
    db.session.refresh(customer)
    assert customer.sending_mode == "customer_smtp" and customer.smtp_port == 587
    assert customer.smtp_timeout == 30 and customer.smtp_verify_tls is True
    assert customer.smtp_password_encrypted and "Very-Secret-42" not in customer.smtp_password_encrypted
    [entry] = audits("customer.sending_mode")
    assert entry.before["sending_mode"] == "standard" and entry.after["sending_mode"] == "customer_smtp"
    assert entry.after["smtp_password"] == "(changed)"
    assert "Very-Secret-42" not in str(entry.before) + str(entry.after)
    page = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert "Very-Secret-42" not in page and customer.smtp_password_encrypted not in page
    assert "Leave empty to keep it" in page or "Lascia vuoto" in page


def test_an_empty_password_keeps_the_stored_one(admin_client, make_customer):
    """Saving again with the password left empty keeps it (and audits no password change)."""
    customer, _ = make_customer()
    admin_client.post(f"/customers/{customer.code}", data=SMTP_FORM)
    db.session.refresh(customer)
    stored = customer.smtp_password_encrypted
    admin_client.post(f"/customers/{customer.code}",
                      data={**SMTP_FORM, "smtp_password": "", "smtp_timeout": "20"})
    db.session.refresh(customer)
    assert customer.smtp_password_encrypted == stored and customer.smtp_timeout == 20
    last = audits("customer.sending_mode")[-1]
    assert last.after == {"smtp_timeout": 20} and last.before == {"smtp_timeout": 30}


def test_another_server_or_user_name_needs_the_password_typed_again(admin_client,
                                                                   make_customer):
    """The saved password belongs to the saved server and account: saving another host, port
    or user name with the password left empty is refused beside the password field."""
    customer, _ = make_customer()
    admin_client.post(f"/customers/{customer.code}", data=SMTP_FORM)
    db.session.refresh(customer)
    for change in ({"smtp_host": "smtp.attacker.example"}, {"smtp_port": "2525"},
                   {"smtp_username": "someone-else@cliente.example"}):
        response = admin_client.post(f"/customers/{customer.code}", headers={"HX-Request": "1"},
                                     data={**SMTP_FORM, "smtp_password": "", **change})
        assert response.status_code == 422, change
        assert "Type the password again" in response.get_data(as_text=True)
    db.session.refresh(customer)
    assert (customer.smtp_host, customer.smtp_port) == ("smtp.cliente.example", 587)
    response = admin_client.post(f"/customers/{customer.code}",
                                 data={**SMTP_FORM, "smtp_host": "SMTP.Cliente.Example",
                                       "smtp_password": ""})
    assert response.status_code == 302  # the same host in capitals is the same server


def test_a_login_without_encryption_needs_an_explicit_confirmation(admin_client, make_customer,
                                                                  support_client):
    """Security None with a login is refused until confirmed (then audited as a warning); the
    read-only view says 'no encryption', not 'TLS certificate: verified'."""
    customer, _ = make_customer()
    form = {**SMTP_FORM, "smtp_security": "none", "smtp_port": "25"}
    response = admin_client.post(f"/customers/{customer.code}", data=form,
                                 headers={"HX-Request": "1"})
    assert response.status_code == 422
    assert "password crosses the network unencrypted" in response.get_data(as_text=True)
    db.session.refresh(customer)
    assert customer.sending_mode == "standard"
    response = admin_client.post(f"/customers/{customer.code}",
                                 data={**form, "confirm_plaintext": "1"})
    assert response.status_code == 302
    [warning] = audits("customer.smtp_plaintext_auth")
    assert "WARNING" in warning.note
    again = admin_client.post(f"/customers/{customer.code}",
                              data={**form, "smtp_password": "", "smtp_timeout": "15"})
    assert again.status_code == 302  # already confirmed: no nagging on every save
    summary = support_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert "no encryption" in summary and "TLS certificate" not in summary


def test_invalid_fields_answer_422_beside_the_fields_and_save_nothing(admin_client,
                                                                     make_customer):
    """Bad port, missing host and From: 422 with each error, the customer unchanged."""
    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}", data={
        **SMTP_FORM, "smtp_port": "99999", "smtp_host": "", "from_address": "nope"},
        headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert body.count('class="field-error"') >= 3
    assert "Very-Secret-42" not in body  # not even echoed back in the form
    db.session.refresh(customer)
    assert customer.sending_mode == "standard" and customer.smtp_password_encrypted is None
    assert audits("customer.sending_mode") == []


def test_turning_tls_verification_off_needs_an_explicit_confirmation(admin_client,
                                                                     make_customer):
    """Unticking verification alone is refused; with the confirmation it is saved and a
    warning is audited."""
    customer, _ = make_customer()
    form = {**SMTP_FORM, "smtp_verify_tls": "0"}
    response = admin_client.post(f"/customers/{customer.code}", data=form)
    assert response.status_code == 422
    db.session.refresh(customer)
    assert customer.smtp_verify_tls is True and customer.sending_mode == "standard"
    response = admin_client.post(f"/customers/{customer.code}",
                                 data={**form, "confirm_insecure": "1"})
    assert response.status_code == 302
    db.session.refresh(customer)
    assert customer.smtp_verify_tls is False
    [warning] = audits("customer.tls_verify_off")
    assert "WARNING" in warning.note


def test_an_invalid_ca_pem_is_refused(admin_client, make_customer):
    """A pasted 'certificate' that is not PEM is refused beside its field."""
    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}", data={
        **SMTP_FORM, "smtp_ca_pem": "-----BEGIN CERTIFICATE-----\nnot base64\n"
                                    "-----END CERTIFICATE-----"})
    assert response.status_code == 422
    assert "PEM" in response.get_data(as_text=True)


def test_support_sees_the_customer_read_only_and_cannot_change_it(support_client,
                                                                  make_customer):
    """Support gets the page without forms; every changing endpoint is refused."""
    customer, _ = make_customer(sending_mode="customer_smtp", smtp_host="smtp.cliente.example",
                                smtp_port=465, smtp_security="ssl",
                                from_address="a@cliente.example")
    page = support_client.get(f"/customers/{customer.code}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "smtp.cliente.example:465" in body
    assert "<form" not in body.split("<main", 1)[1] and "hx-post" not in body.split("<main", 1)[1]
    code = customer.code
    for url in (f"/customers/{code}", f"/customers/{code}/sending", f"/customers/{code}/keys",
                f"/customers/{code}/test-connection", f"/customers/{code}/test-email",
                f"/customers/{code}/resume", f"/customers/{code}/open-tracking",
                f"/customers/{code}/dns-check", "/settings/sending/off"):
        assert support_client.post(url, data=SMTP_FORM).status_code == 403, url
    assert support_client.get("/settings/").status_code == 403


def test_the_customer_sending_switch_holds_and_releases_mail(admin_client, make_customer,
                                                            api_post):
    """Off holds new mail (audited); on releases it to the queue."""
    customer, key = make_customer()
    r = admin_client.post(f"/customers/{customer.code}/sending", data={"enabled": "0"},
                          headers={"HX-Request": "true"})
    assert r.status_code == 200 and "banners" in r.headers.get("HX-Trigger", "")
    api_post(key, {"event": "password_reset", "to": "u@example.com",
                   "data": {"user_name": "U", "link": "https://x.example.com", "expires_hours": 1}})
    message = db.session.scalar(select(Message))
    assert message.status == "held"
    admin_client.post(f"/customers/{customer.code}/sending", data={"enabled": "1"})
    db.session.refresh(message)
    assert message.status == "queued"
    assert [e.after for e in audits("customer.sending")] == [
        {"sending_enabled": False}, {"sending_enabled": True}]


def test_open_tracking_toggle_is_saved_and_audited(admin_client, make_customer):
    """The toggle flips Customer.open_tracking with an audit entry."""
    customer, _ = make_customer()
    admin_client.post(f"/customers/{customer.code}/open-tracking", data={"enabled": "0"})
    db.session.refresh(customer)
    assert customer.open_tracking is False
    assert audits("customer.open_tracking")[0].after == {"open_tracking": False}


def test_api_keys_are_shown_once_and_revoked_with_the_key_refused(admin_client,
                                                                  make_customer, api_post):
    """A new key appears once; after revoking it the API answers 401."""
    customer, _ = make_customer()
    body = admin_client.post(f"/customers/{customer.code}/keys", data={"label": "erp"},
                             headers={"HX-Request": "true"}).get_data(as_text=True)
    key = body.split('id="new-api-key">', 1)[1].split("<", 1)[0]
    assert key.startswith("pst_")
    assert key not in admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    row = db.session.scalar(select(ApiKey).where(ApiKey.label == "erp"))
    body = admin_client.post(f"/customers/{customer.code}/keys/{row.id}/revoke",
                             headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "revoked" in body or "revocata" in body
    assert api_post(key, {"event": "order_closed", "to": "a@example.com"}).status_code == 401


def test_an_unknown_customer_is_404(admin_client):
    """No customer with that code: 404, not 500."""
    assert admin_client.get("/customers/NOPE").status_code == 404
    assert admin_client.post("/customers/NOPE/keys/1/revoke").status_code == 404


def test_settings_are_validated_and_audited_before_after(admin_client):
    """Bad values answer 422 and save nothing; good ones are stored and audited."""
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert 'value="notification@postino.example.com"' in page
    good = {
        "sender_notification_name": "Notifiche", "sender_notification_address":
        "notifiche@postino.example.com", "sender_registration_name": "Registrazione",
        "sender_registration_address": "registration@postino.example.com",
        "bounce_domain": "bounces.postino.example.com", "retention_days": "45",
        "max_age_hours": "24", "retry_schedule": "1, 5, 15", "soft_bounce_threshold": "3",
        "soft_bounce_window_days": "7", "soft_suppression_days": "7",
        "billing_window_days": "90",
    }
    bad = {**good, "retention_days": "0", "retry_schedule": "5, x", "bounce_domain": "no"}
    response = admin_client.post("/settings/", data=bad, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert response.get_data(as_text=True).count('class="field-error"') == 3
    assert db.session.scalar(select(Setting)) is None
    response = admin_client.post("/settings/", data=good)
    assert response.status_code == 302
    assert settings.get("retention_days") == 45 and settings.get("retry_schedule") == [1, 5, 15]
    assert settings.get("sender_notification") == "Notifiche <notifiche@postino.example.com>"
    entry = next(e for e in audits("setting.update") if e.target_id == "retention_days")
    assert entry.before == {"retention_days": 30} and entry.after == {"retention_days": 45}


def test_the_global_switch_turns_off_with_confirmation_and_the_banner_turns_it_on(
        admin_client, make_customer, api_post):
    """Off (confirmed in the page) holds mail and shows the banner; its button turns it on."""
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert 'hx-confirm="' in page.split('id="sending-switch"', 1)[1].split("</article>")[0]
    r = admin_client.post("/settings/sending/off", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "banners" in r.headers["HX-Trigger"]
    assert settings.sending_enabled() is False
    customer, key = make_customer()
    api_post(key, {"event": "password_reset", "to": "u@example.com",
                   "data": {"user_name": "U", "link": "https://x.example.com", "expires_hours": 1}})
    home = admin_client.get("/customers/").get_data(as_text=True)
    assert "/settings/sending/on" in home  # the banner's button
    r = admin_client.post("/settings/sending/on")
    assert r.status_code == 302 and settings.sending_enabled() is True
    assert db.session.scalar(select(Message)).status == "queued"
    assert [e.after for e in audits("setting.update")] == [
        {"sending_enabled": False}, {"sending_enabled": True}]


def test_admin_creates_a_customer_and_sees_its_key_once(admin_client):
    """The New customer form creates it in standard mode and shows the key."""
    response = admin_client.post("/customers/", data={"code": "ACME", "name": "Acme S.p.A."})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="new-api-key">pst_' in body
    response = admin_client.post("/customers/", data={"code": "ACME", "name": "Again"})
    assert response.status_code == 422


def test_a_billable_change_without_minutes_answers_422_beside_the_field_and_saves_nothing(
        admin_client, make_customer):
    """The form refuses a switch to customer_smtp with no minutes: nothing stored, nothing
    audited, no intervention; the typed values (not the password) come back."""
    from dashboard.models import ConfigurationIntervention

    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}",
                                 data={**SMTP_FORM, "minutes": ""}, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    minutes_field = body.split('id="f-minutes"', 1)[1].split("</label>", 1)[0]
    assert "field-error" in minutes_field and "minutes spent" in minutes_field
    assert 'value="T-5120"' in body and "Very-Secret-42" not in body
    db.session.refresh(customer)
    assert customer.sending_mode == "standard" and customer.smtp_host is None
    assert audits("customer.sending_mode") == []
    assert db.session.scalar(select(ConfigurationIntervention)) is None


def test_the_saved_change_shows_its_minutes_beside_the_estimate(admin_client, make_customer,
                                                                admin):
    """The estimate picked in the form is linked; the answer says minutes and estimate, and
    asks the interventions panel to refresh."""
    from dashboard.models import ConfigurationIntervention
    from dashboard.services.billing import interventions

    customer, _ = make_customer()
    estimate = interventions.add_estimate(customer, "2026-03-02", "60", "", "own SMTP", admin)
    form = admin_client.get(f"/customers/{customer.code}/mode?sending_mode=customer_smtp",
                            headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-swap-oob="true"' in form and f'<option value="{estimate.id}" selected' in form
    response = admin_client.post(f"/customers/{customer.code}",
                                 data={**SMTP_FORM, "minutes": "45", "estimate": estimate.id},
                                 headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Billable intervention recorded: 45 min." in body and "60 min" in body
    assert "interventions-changed" in response.headers["HX-Trigger"]
    item = db.session.scalar(select(ConfigurationIntervention))
    assert (item.minutes, item.ticket, item.estimate_id) == (45, "T-5120", estimate.id)
    panel = admin_client.get(f"/customers/{customer.code}/interventions",
                             headers={"HX-Request": "true"}).get_data(as_text=True)
    row = panel.split(f'id="customer-intervention-{item.id}"', 1)[1].split("</tr>", 1)[0]
    assert "45" in row and "60 min" in row and "billable" in row


def test_waiving_from_the_form_records_the_reason(admin_client, make_customer):
    """Ticking the waiver needs its reason; with it the change is saved, not billable."""
    from dashboard.models import ConfigurationIntervention

    customer, _ = make_customer()
    data = {**SMTP_FORM, "minutes": "", "waive": "1", "waive_reason": ""}
    response = admin_client.post(f"/customers/{customer.code}", data=data)
    assert response.status_code == 422
    assert db.session.scalar(select(ConfigurationIntervention)) is None
    response = admin_client.post(f"/customers/{customer.code}",
                                 data={**data, "waive_reason": "included in the contract"})
    assert response.status_code == 302
    item = db.session.scalar(select(ConfigurationIntervention))
    assert (item.billable, item.waived_reason) == (False, "included in the contract")


def test_admins_record_and_withdraw_estimates_support_only_reads_them(
        admin_client, support_client, make_customer):
    """422 beside the fields for a bad estimate; a good one is listed as open; withdrawing
    is kept; support sees the panel without forms and cannot post."""
    from dashboard.models import ConfigurationEstimate

    customer, _ = make_customer()
    url = f"/customers/{customer.code}/estimates"
    bad = admin_client.post(url, data={"estimated_on": "", "minutes": "", "amount": "x",
                                       "note": ""}, headers={"HX-Request": "true"})
    assert bad.status_code == 422 and bad.get_data(as_text=True).count("field-error") >= 2
    good = admin_client.post(url, data={"estimated_on": "2026-04-01", "minutes": "90",
                                        "amount": "250,00", "note": "own SMTP set-up"},
                             headers={"HX-Request": "true"})
    assert good.status_code == 200 and "estimates-changed" in good.headers["HX-Trigger"]
    assert "own SMTP set-up" in good.get_data(as_text=True)
    estimate = db.session.scalar(select(ConfigurationEstimate))
    assert (estimate.minutes, estimate.amount_cents) == (90, 25000)
    page = support_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    panel = page.split('id="customer-interventions"', 1)[1]
    assert "own SMTP set-up" in panel and "<form" not in panel and "Withdraw" not in panel
    assert support_client.post(url, data={"minutes": "5", "note": "x"}).status_code == 403
    withdraw = f"/customers/{customer.code}/estimates/{estimate.id}/withdraw"
    assert admin_client.post(withdraw, headers={"HX-Request": "true"}).status_code == 200
    db.session.refresh(estimate)
    assert estimate.withdrawn_at is not None
    assert admin_client.post(withdraw, headers={"HX-Request": "true"}).status_code == 422
    other, _ = make_customer()
    assert admin_client.post(f"/customers/{other.code}/estimates/{estimate.id}/withdraw"
                             ).status_code == 404
    assert [e.action for e in audits("customer.estimate")] == ["customer.estimate"]
    assert len(audits("customer.estimate_withdrawn")) == 1
