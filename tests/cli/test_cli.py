"""The core CLI: `flask create-user` and `flask create-customer`, good and bad input."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import ApiKey, AuditEntry, Customer, User
from dashboard.services.accounts import customers

from ..conftest import PASSWORD


def error_lines(result) -> list[str]:
    """The non-empty lines the command wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result) -> str:
    """Bad input: exit code 2 and exactly one line on stderr, starting with 'Error:'."""
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    return lines[0]


def user_count() -> int:
    """How many staff users exist."""
    return db.session.scalar(select(func.count(User.id)))


def test_create_user_with_a_password(runner):
    """`flask create-user EMAIL --role R --password PW` makes a user who can log in."""
    result = runner.invoke(args=["create-user", "Anna@Staff.example.com", "--role", "support",
                                 "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "anna@staff.example.com"))
    assert user.role == "support"
    assert user.active
    assert user.check_password(PASSWORD)
    assert PASSWORD not in user.password_hash


def test_create_user_prompts_for_the_password_when_not_given(runner):
    """Without --password the command asks twice, hiding the input."""
    result = runner.invoke(args=["create-user", "luca@staff.example.com", "--role", "billing"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert PASSWORD not in result.output
    user = db.session.scalar(select(User).where(User.email == "luca@staff.example.com"))
    assert user.check_password(PASSWORD)


def test_create_user_prompt_insists_until_both_entries_match(runner):
    """A mistyped confirmation asks again instead of storing a typo."""
    other = "another long password"
    result = runner.invoke(args=["create-user", "sara@staff.example.com", "--role", "admin"],
                           input=f"{PASSWORD}\n{other}\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "sara@staff.example.com"))
    assert user.check_password(PASSWORD)


def test_create_user_is_audited(runner):
    """The audit log records the creation, attributed to the system."""
    runner.invoke(args=["create-user", "eva@staff.example.com", "--role", "admin",
                        "--password", PASSWORD])
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "user.create"))
    assert entry.actor_label == "system"
    assert entry.after == {"email": "eva@staff.example.com", "role": "admin"}


@pytest.mark.parametrize("args, mentions", [
    (["someone@staff.example.com", "--role", "boss"],
     "Role must be one of admin, support, billing"),
    (["not-an-address", "--role", "admin"], "valid email address"),
    (["someone@staff.example.com", "--role", "admin", "--password", "short"], "at least 8"),
])
def test_create_user_refuses_bad_input_with_one_line_and_exit_code_2(runner, args, mentions):
    """A bad role, address or password: one line on stderr, exit code 2, nobody created."""
    if "--password" not in args:
        args = [*args, "--password", PASSWORD]
    result = runner.invoke(args=["create-user", *args])
    assert mentions in assert_one_line_error(result)
    assert user_count() == 0


def test_create_user_refuses_a_duplicate(runner, make_user):
    """The same address twice (whatever its case) is a one-line error."""
    user = make_user("support", email="dup@staff.example.com")
    result = runner.invoke(args=["create-user", "DUP@staff.example.com", "--role", "admin",
                                 "--password", PASSWORD])
    assert "already exists" in assert_one_line_error(result)
    db.session.refresh(user)
    assert user.role == "support"
    assert user_count() == 1


def test_create_customer_prints_the_api_key_as_its_last_line(runner):
    """The key is shown once, on the last line, and it authenticates the new customer."""
    result = runner.invoke(args=["create-customer", "ACME", "--name", "Acme S.p.A."])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    customer = customers.by_code("ACME")
    assert customer.name == "Acme S.p.A."
    assert customer.sending_mode == "standard"
    assert customers.customer_for_key(key) == customer


def test_create_customer_stores_only_a_hash_of_the_key(runner):
    """The database holds the key's SHA-256 and a short prefix, never the key itself."""
    result = runner.invoke(args=["create-customer", "ACME", "--name", "Acme"])
    key = result.output.strip().splitlines()[-1]
    stored = db.session.scalars(select(ApiKey)).all()
    assert len(stored) == 1
    assert stored[0].key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert stored[0].prefix == key[:12]
    row = db.session.execute(select(ApiKey.__table__)).one()
    assert key not in [str(value) for value in row]


def test_two_customers_get_different_keys(runner):
    """Keys are random per customer."""
    first = runner.invoke(args=["create-customer", "ONE", "--name", "One"])
    second = runner.invoke(args=["create-customer", "TWO", "--name", "Two"])
    assert first.output.splitlines()[-1] != second.output.splitlines()[-1]


@pytest.mark.parametrize("code", ["x", "bad code", "_under", "a" * 41, "accént", "semi;colon"])
def test_create_customer_refuses_a_bad_code(runner, code):
    """Codes are 2-40 letters, digits, '-' or '_': anything else is a one-line error."""
    result = runner.invoke(args=["create-customer", code, "--name", "Whoever"])
    assert "code" in assert_one_line_error(result)
    assert db.session.scalar(select(func.count(Customer.id))) == 0


def test_create_customer_refuses_a_duplicate_code(runner, make_customer):
    """An existing code is a one-line error and no second key is issued."""
    make_customer("ACME")
    result = runner.invoke(args=["create-customer", "ACME", "--name", "Another Acme"])
    assert "already exists" in assert_one_line_error(result)
    assert db.session.scalar(select(func.count(ApiKey.id))) == 1


def test_create_customer_refuses_an_empty_name(runner):
    """A blank name is a one-line error."""
    result = runner.invoke(args=["create-customer", "ACME", "--name", "   "])
    assert "name" in assert_one_line_error(result)


def test_the_cli_answers_in_english_whatever_the_ui_default(runner):
    """Service messages are translated for the dashboard, but the CLI speaks English."""
    result = runner.invoke(args=["create-user", "x@staff.example.com", "--role", "boss",
                                 "--password", PASSWORD])
    assert assert_one_line_error(result).startswith("Error: Role must be")
