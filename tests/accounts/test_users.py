"""The Users page (admin): list, create, change role, deactivate, every change audited."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import AuditEntry, User

from ..conftest import PASSWORD

HTMX = {"HX-Request": "true"}


@pytest.fixture
def admin_en(admin, admin_client):
    """The logged-in admin's client, with the admin reading English."""
    admin.language = "en"
    db.session.commit()
    return admin_client


def field_errors(html: str, field: str) -> list[str]:
    """The error messages shown inside the label of one form field."""
    match = re.search(rf'<label for="{field}">(.*?)</label>', html, re.DOTALL)
    assert match, f"no field {field} on the page"
    return re.findall(r'<small class="field-error">(.*?)</small>', match.group(1), re.DOTALL)


def audit_entries(action: str) -> list[AuditEntry]:
    """Audit entries of one kind, oldest first."""
    return db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
    ).all()


def user_count() -> int:
    """How many staff users exist."""
    return db.session.scalar(select(func.count(User.id)))


def new_user_form(**fields) -> dict:
    """A valid new-user form, with some fields replaced."""
    return {"email": "giulia@staff.example.com", "name": "Giulia Bianchi", "role": "support",
            "password": PASSWORD, **fields}


def test_the_users_page_lists_every_user_with_role_and_status(admin_en, make_user):
    """Admins see each user's email, name, role and whether they are active."""
    make_user("billing", email="conti@staff.example.com", name="Ufficio Conti")
    html = admin_en.get("/users/").get_data(as_text=True)
    assert "conti@staff.example.com" in html
    assert "Ufficio Conti" in html
    assert '<option value="billing" selected>' in html
    assert "Create user" in html


def test_an_admin_creates_a_user_and_the_audit_log_says_who(admin_en, admin):
    """Creating a user stores it with its role and records the admin as the actor."""
    response = admin_en.post("/users/", data=new_user_form())
    assert response.status_code == 302
    user = db.session.scalar(select(User).where(User.email == "giulia@staff.example.com"))
    assert user.role == "support" and user.name == "Giulia Bianchi" and user.active
    assert user.check_password(PASSWORD)
    (entry,) = [e for e in audit_entries("user.create") if e.target_id == str(user.id)]
    assert entry.actor_id == admin.id
    assert entry.actor_label == admin.email
    assert entry.after == {"email": "giulia@staff.example.com", "role": "support"}
    assert PASSWORD not in str(entry.after)
    assert "User created." in admin_en.get("/users/").get_data(as_text=True)


def test_the_new_user_can_log_in(admin_en, app, login):
    """A user created on the page logs in with the password the admin gave."""
    admin_en.post("/users/", data=new_user_form())
    user = db.session.scalar(select(User).where(User.email == "giulia@staff.example.com"))
    login(app.test_client(), user)


@pytest.mark.parametrize("fields, field, message", [
    ({"email": "not-an-address"}, "email", "Enter a valid email address."),
    ({"email": ""}, "email", "This field is required."),
    ({"password": "short"}, "password", "The password must be at least 8 characters long."),
    ({"password": ""}, "password", "This field is required."),
    ({"role": "boss"}, "role", "Not a valid choice."),
])
def test_a_bad_new_user_comes_back_422_with_the_error_beside_its_field(admin_en, fields, field,
                                                                       message):
    """Invalid input re-renders the form with status 422, the message next to the field."""
    before = user_count()
    response = admin_en.post("/users/", data=new_user_form(**fields))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert field_errors(html, field) == [message]
    assert user_count() == before


def test_a_duplicate_address_is_refused_beside_the_email_field(admin_en, make_user):
    """Two users cannot share an address, whatever its capitals."""
    make_user("support", email="giulia@staff.example.com")
    response = admin_en.post("/users/", data=new_user_form(email="Giulia@Staff.example.com"))
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), "email") == [
        "A user with this email already exists."]
    assert audit_entries("user.create")[-1].after["email"] == "giulia@staff.example.com"
    assert len(audit_entries("user.create")) == 2  # the admin and the first Giulia


def test_the_form_keeps_what_was_typed_except_the_password(admin_en):
    """After an error the admin does not retype the address; the password is never echoed."""
    response = admin_en.post("/users/", data=new_user_form(password="short"))
    html = response.get_data(as_text=True)
    assert 'value="giulia@staff.example.com"' in html
    assert 'value="short"' not in html


def test_errors_are_in_the_admins_language(admin, admin_client, make_user):
    """An Italian admin reads the form errors in Italian."""
    admin.language = "it"
    db.session.commit()
    make_user("support", email="giulia@staff.example.com")
    response = admin_client.post("/users/", data=new_user_form())
    assert field_errors(response.get_data(as_text=True), "email") == [
        "Esiste già un utente con questa email."]
    response = admin_client.post("/users/", data=new_user_form(email=""))
    assert field_errors(response.get_data(as_text=True), "email") == [
        "Questo campo è obbligatorio."]


def test_changing_a_role_answers_the_row_and_is_audited(admin_en, admin, make_user):
    """The role select posts through htmx, gets its row back, and the change is audited."""
    colleague = make_user("support")
    response = admin_en.post(f"/users/{colleague.id}", data={"role": "billing"}, headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="user-{colleague.id}">')
    assert '<option value="billing" selected>' in html
    db.session.refresh(colleague)
    assert colleague.role == "billing"
    (entry,) = audit_entries("user.update")
    assert entry.actor_id == admin.id
    assert entry.target_id == str(colleague.id)
    assert entry.before == {"role": "support"}
    assert entry.after == {"role": "billing"}


def test_a_new_role_applies_at_the_next_request(admin_en, app, make_user, login):
    """Someone moved from support to billing loses the Log at once."""
    colleague = make_user("support")
    their_client = login(app.test_client(), colleague)
    assert their_client.get("/log/").status_code == 200
    admin_en.post(f"/users/{colleague.id}", data={"role": "billing"}, headers=HTMX)
    assert their_client.get("/log/").status_code == 403


def test_an_unknown_role_is_refused_in_the_row(admin_en, make_user):
    """A tampered role value answers 422 with the error in the row and changes nothing."""
    colleague = make_user("support")
    response = admin_en.post(f"/users/{colleague.id}", data={"role": "boss"}, headers=HTMX)
    assert response.status_code == 422
    assert "Role must be one of admin, support, billing." in response.get_data(as_text=True)
    db.session.refresh(colleague)
    assert colleague.role == "support"
    assert audit_entries("user.update") == []


def test_deactivating_a_user_is_audited_and_locks_them_out(admin_en, app, admin, make_user,
                                                          login):
    """Deactivation ends the colleague's session and is recorded with before and after."""
    colleague = make_user("support")
    their_client = login(app.test_client(), colleague)
    response = admin_en.post(f"/users/{colleague.id}", data={"active": "0"}, headers=HTMX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "deactivated" in html and "Reactivate" in html
    db.session.refresh(colleague)
    assert colleague.active is False
    (entry,) = audit_entries("user.update")
    assert entry.actor_id == admin.id
    assert entry.before == {"active": True}
    assert entry.after == {"active": False}
    assert their_client.get("/").status_code == 302
    refused = app.test_client().post("/login", data={"email": colleague.email,
                                                     "password": PASSWORD})
    assert refused.status_code == 401


def test_a_deactivated_user_can_be_reactivated(admin_en, make_user):
    """Reactivation is one click and audited too."""
    colleague = make_user("support")
    admin_en.post(f"/users/{colleague.id}", data={"active": "0"}, headers=HTMX)
    response = admin_en.post(f"/users/{colleague.id}", data={"active": "1"}, headers=HTMX)
    assert response.status_code == 200
    db.session.refresh(colleague)
    assert colleague.active is True
    assert [e.after for e in audit_entries("user.update")] == [{"active": False},
                                                               {"active": True}]


def test_an_admin_cannot_deactivate_themselves(admin_en, admin):
    """The row answers 422 with the reason, and the admin stays active."""
    response = admin_en.post(f"/users/{admin.id}", data={"active": "0"}, headers=HTMX)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert '<small class="field-error">You cannot deactivate yourself.</small>' in html
    db.session.refresh(admin)
    assert admin.active is True
    assert audit_entries("user.update") == []
    assert admin_en.get("/users/").status_code == 200


def test_an_admin_is_not_offered_to_deactivate_or_demote_themselves(admin_en, admin,
                                                                     make_user):
    """Their own row has no Deactivate button and a fixed role; a colleague's row has both."""
    colleague = make_user("support")
    html = admin_en.get("/users/").get_data(as_text=True)
    own = html[html.index(f'id="user-{admin.id}"'):]
    own = own[:own.index("</tr>")]
    other = html[html.index(f'id="user-{colleague.id}"'):]
    other = other[:other.index("</tr>")]
    assert "Deactivate" not in own and "(you)" in own and "disabled" in own
    assert "Deactivate" in other and "disabled" not in other


def test_an_admin_cannot_drop_their_own_admin_role(admin_en, admin):
    """Nobody locks themselves out of the Users page by accident."""
    response = admin_en.post(f"/users/{admin.id}", data={"role": "support"}, headers=HTMX)
    assert response.status_code == 422
    assert "You cannot remove your own admin role." in response.get_data(as_text=True)
    db.session.refresh(admin)
    assert admin.role == "admin"


def test_without_htmx_an_update_redirects_with_a_flash(admin_en, admin):
    """A plain form post (no JavaScript) comes back to the page with the message."""
    response = admin_en.post(f"/users/{admin.id}", data={"active": "0"})
    assert response.status_code == 302
    assert "You cannot deactivate yourself." in admin_en.get("/users/").get_data(as_text=True)


def test_updating_an_unknown_user_is_a_404(admin_en):
    """A missing id is a 404, never a 500."""
    assert admin_en.post("/users/999999", data={"active": "0"}, headers=HTMX).status_code == 404


def test_a_change_that_changes_nothing_is_not_audited(admin_en, make_user):
    """Picking the role a user already has leaves the audit log alone."""
    colleague = make_user("support")
    admin_en.post(f"/users/{colleague.id}", data={"role": "support"}, headers=HTMX)
    assert audit_entries("user.update") == []
