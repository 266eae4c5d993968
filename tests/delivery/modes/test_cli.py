"""`flask customer-settings` and `flask sending`: same validation and audit as the pages."""
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import AuditEntry
from dashboard.services.core import settings


def test_customer_settings_sets_customer_smtp(runner, make_customer):
    """Every contract option is accepted; the password is stored encrypted and not printed."""
    customer, _ = make_customer()
    result = runner.invoke(args=[
        "customer-settings", customer.code, "--mode", "customer_smtp",
        "--from-address", "notifiche@cliente.example", "--from-name", "Cliente",
        "--smtp-host", "smtp.cliente.example", "--smtp-port", "465", "--smtp-security", "ssl",
        "--smtp-auth", "login", "--smtp-username", "notifiche@cliente.example",
        "--smtp-password", "Pw-from-cli-1"])
    assert result.exit_code == 0, result.output
    assert "mode=customer_smtp" in result.output and "Pw-from-cli-1" not in result.output
    db.session.refresh(customer)
    assert (customer.smtp_host, customer.smtp_port, customer.smtp_security) == (
        "smtp.cliente.example", 465, "ssl")
    assert customer.smtp_password_encrypted and "Pw-from-cli-1" not in customer.smtp_password_encrypted
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.sending_mode"))
    assert entry.actor_label == "cli" and entry.after["smtp_password"] == "(changed)"


def test_customer_settings_refuses_bad_input_and_saves_nothing(runner, make_customer):
    """Missing host and a bad port: exit 2 with each error; the customer is unchanged."""
    customer, _ = make_customer()
    result = runner.invoke(args=["customer-settings", customer.code, "--mode", "customer_smtp",
                                 "--from-address", "a@cliente.example", "--smtp-port", "0"])
    assert result.exit_code == 2
    assert "--smtp-port" in result.output and "--smtp-host" in result.output
    db.session.refresh(customer)
    assert customer.sending_mode == "standard"


def test_customer_settings_unknown_customer_and_mode(runner):
    """An unknown code or mode is a clear error, not a traceback."""
    result = runner.invoke(args=["customer-settings", "NOPE", "--mode", "standard"])
    assert result.exit_code == 2 and "NOPE" in result.output
    result = runner.invoke(args=["customer-settings", "NOPE", "--mode", "bogus"])
    assert result.exit_code == 2


def test_customer_settings_custom_from_reports_the_dns_verdict(runner, make_customer,
                                                               dns_config):
    """custom_from runs the DNS check and prints its verdict."""
    customer, _ = make_customer()
    result = runner.invoke(args=["customer-settings", customer.code, "--mode", "custom_from",
                                 "--from-address", "ordini@soft.example"])
    assert result.exit_code == 0, result.output
    assert "DNS check of soft.example: risk" in result.output


def test_sending_off_and_on_globally_and_per_customer(runner, make_customer):
    """The switches, audited, for everyone and for one customer; bad input refused."""
    customer, _ = make_customer()
    assert runner.invoke(args=["sending", "off"]).exit_code == 0
    assert settings.sending_enabled() is False
    result = runner.invoke(args=["sending", "on"])
    assert result.exit_code == 0 and "sending on for everyone" in result.output
    result = runner.invoke(args=["sending", "off", "--customer", customer.code])
    assert result.exit_code == 0
    db.session.refresh(customer)
    assert customer.sending_enabled is False
    assert runner.invoke(args=["sending", "maybe"]).exit_code == 2
    assert runner.invoke(args=["sending", "on", "--customer", "NOPE"]).exit_code == 2
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions.count("setting.update") == 2 and "customer.sending" in actions


SMTP_ARGS = ["--mode", "customer_smtp", "--from-address", "notifiche@cliente.example",
             "--smtp-host", "smtp.cliente.example", "--smtp-auth", "login",
             "--smtp-username", "notifiche@cliente.example", "--smtp-password", "Pw-from-cli-2"]


def test_customer_settings_records_the_intervention_with_minutes_and_ticket(runner,
                                                                          make_customer):
    """--minutes and --ticket go on the billable intervention, printed on its own line."""
    from dashboard.models import ConfigurationIntervention

    customer, _ = make_customer()
    result = runner.invoke(args=["customer-settings", customer.code, *SMTP_ARGS,
                                 "--minutes", "40", "--ticket", "T-5120"])
    assert result.exit_code == 0, result.output
    assert "billable, 40 min" in result.output and "Pw-from-cli-2" not in result.output
    item = db.session.scalar(select(ConfigurationIntervention))
    assert (item.minutes, item.ticket, item.billable, item.actor_label) == (40, "T-5120", True,
                                                                             "cli")
    assert "Pw-from-cli-2" not in str(item.fields)


def test_a_billable_change_without_minutes_is_recorded_with_minutes_to_be_completed(
        runner, make_customer):
    """The contract's invocation, unchanged, still works; the minutes wait for billing."""
    from dashboard.models import ConfigurationIntervention

    customer, _ = make_customer()
    result = runner.invoke(args=["customer-settings", customer.code, *SMTP_ARGS])
    assert result.exit_code == 0, result.output
    assert "minutes to be completed" in result.output
    item = db.session.scalar(select(ConfigurationIntervention))
    assert item.billable and item.minutes is None and item.minutes_pending
    result = runner.invoke(args=["customer-settings", customer.code, "--mode", "standard"])
    assert result.exit_code == 0 and "not billable (return to standard)" in result.output


def test_waive_records_the_reason_and_the_change_is_not_billable(runner, make_customer,
                                                                dns_config):
    """--waive REASON: not billable, the reason kept."""
    from dashboard.models import ConfigurationIntervention

    customer, _ = make_customer()
    result = runner.invoke(args=["customer-settings", customer.code, "--mode", "custom_from",
                                 "--from-address", "ordini@nospf.example",
                                 "--waive", "included in the contract"])
    assert result.exit_code == 0, result.output
    assert "waived: included in the contract" in result.output
    item = db.session.scalar(select(ConfigurationIntervention))
    assert (item.billable, item.waived_reason) == (False, "included in the contract")


def test_bad_billing_flags_are_refused_and_nothing_is_saved(runner, make_customer):
    """Minutes that are not a number, 0 minutes on a billable change, a waiver without a
    reason or of a return to standard: exit 2 naming the flag, the customer unchanged."""
    from dashboard.models import ConfigurationIntervention

    customer, _ = make_customer()
    for flags, named in ((["--minutes", "ten"], "--minutes"), (["--minutes", "0"], "--minutes"),
                         (["--waive", " "], "--waive")):
        result = runner.invoke(args=["customer-settings", customer.code, *SMTP_ARGS, *flags])
        assert result.exit_code == 2 and named in result.output, result.output
    customer.sending_mode = "custom_from"
    customer.from_address = "a@cliente.example"
    db.session.commit()
    result = runner.invoke(args=["customer-settings", customer.code, "--mode", "standard",
                                 "--waive", "why not"])
    assert result.exit_code == 2 and "--waive" in result.output
    db.session.refresh(customer)
    assert customer.sending_mode == "custom_from" and customer.smtp_host is None
    assert db.session.scalar(select(ConfigurationIntervention)) is None


def test_customer_settings_needs_confirm_plaintext_for_a_login_without_encryption(
        runner, make_customer):
    """Like the page: security none with a login is refused unless --confirm-plaintext."""
    customer, _ = make_customer()
    args = ["customer-settings", customer.code, "--mode", "customer_smtp",
            "--from-address", "notifiche@cliente.example", "--smtp-host", "smtp.cliente.example",
            "--smtp-port", "25", "--smtp-security", "none", "--smtp-auth", "login",
            "--smtp-username", "notifiche@cliente.example", "--smtp-password", "Pw-from-cli-1"]
    refused = runner.invoke(args=args)
    assert refused.exit_code == 2
    assert "--smtp-security: With security None the password crosses" in refused.output
    db.session.refresh(customer)
    assert customer.sending_mode == "standard"
    accepted = runner.invoke(args=[*args, "--confirm-plaintext"])
    assert accepted.exit_code == 0, accepted.output
    db.session.refresh(customer)
    assert customer.smtp_security == "none"
