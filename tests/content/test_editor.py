"""The Templates pages: index, editor, live preview, save (422 on errors), reset, versions."""
from __future__ import annotations

import re

from dashboard.extensions import db
from dashboard.models import Message, Template, TemplateVersion
from dashboard.services.content import templates as service

HX = {"HX-Request": "true"}


def editor_url(customer, event="order_closed", language="it", suffix=""):
    """The editor's address for a customer's event and language."""
    return f"/templates/{customer.code}/{event}/{language}{suffix}"


def form(**fields):
    """The editor's fields, valid unless overridden."""
    values = {"subject": "Ordine {{ order_number }}!", "html": "<p>Totale {{ total }}</p>",
              "text": "", "sample": ""}
    values.update(fields)
    return values


def test_templates_pages_are_for_admins_only(support_client, make_customer):
    """Support staff cannot open the index or an editor."""
    customer, _ = make_customer()
    assert support_client.get("/templates/").status_code == 403
    assert support_client.get(editor_url(customer)).status_code == 403


def test_index_lists_every_event_and_language_of_the_chosen_customer(admin_client, make_customer,
                                                                      admin):
    """Defaults are marked 'default', overrides show their version; the table is a partial."""
    customer, _ = make_customer(code="ROSSI")
    service.save(customer, "order_closed", "en", {"subject": "x", "html": "y"}, admin)
    page = admin_client.get("/templates/?customer=ROSSI")
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)
    body = admin_client.get("/templates/?customer=ROSSI", headers=HX).get_data(as_text=True)
    assert "<html" not in body
    assert body.count('/templates/ROSSI/') == 12 and "v1" in body
    assert "Choose a customer" in admin_client.get("/templates/").get_data(as_text=True)


def test_each_template_link_is_named_by_its_event_and_language(admin_client, make_customer):
    """Twelve links, twelve names ("Order closed in Italian: default"), not twelve "default"."""
    make_customer(code="ROSSI")
    body = admin_client.get("/templates/?customer=ROSSI", headers=HX).get_data(as_text=True)
    links = re.findall(r'<a class="slot-link" href="/templates/ROSSI/[^"]+">(.*?)</a>', body, re.S)
    names = [" ".join(re.sub(r"<[^>]+>", " ", link).split()) for link in links]
    assert len(names) == len(set(names)) == 12, names
    assert "Order closed in Italian: default" in names
    assert "Password reset in English: default" in names


def test_editor_shows_the_default_its_variables_and_a_rendered_preview(admin_client, make_customer):
    """The page carries the default source, the documented variables and a sandboxed preview."""
    customer, _ = make_customer()
    body = admin_client.get(editor_url(customer)).get_data(as_text=True)
    assert "Ordine {{ order_number }} chiuso" in body
    assert "{{ agent_name }}" in body and 'sandbox="allow-same-origin"' in body and "srcdoc=" in body
    assert "Ordine ORD-2026-00421 chiuso" in body  # the rendered subject
    assert 'hx-trigger="input delay:400ms"' in body
    assert admin_client.get(editor_url(customer, event="nope")).status_code == 404
    assert admin_client.get("/templates/NOPE/order_closed/it").status_code == 404


def test_preview_answers_a_partial_to_htmx_and_a_full_page_otherwise(admin_client, make_customer):
    """htmx gets the preview fragment (field errors out of band); a plain POST the page."""
    customer, _ = make_customer()
    partial = admin_client.post(editor_url(customer, suffix="/preview"), data=form(), headers=HX)
    body = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "<html" not in body and "<form" not in body
    assert "Ordine ORD-2026-00421!" in body and 'hx-swap-oob="true"' in body
    assert "Vary" in partial.headers and "HX-Request" in partial.headers["Vary"]
    page = admin_client.post(editor_url(customer, suffix="/preview"), data=form())
    body = page.get_data(as_text=True)
    assert "<html" in body and "Ordine ORD-2026-00421!" in body and 'id="template-form"' in body
    assert "hx-swap-oob" not in body


def test_preview_shows_errors_with_their_lines(admin_client, make_customer):
    """An unknown variable and a broken tag are listed with part and line in the preview."""
    customer, _ = make_customer()
    body = admin_client.post(editor_url(customer, suffix="/preview"), headers=HX, data=form(
        html="<p>\n{{ totale }}</p>", text="ok\n\n{% for %}")).get_data(as_text=True)
    assert "unknown variable &#39;totale&#39;" in body
    assert re.search(r"HTML, line 2", body) and re.search(r"Plain text, line 3", body)
    oob_html = body.split('<div id="errors-html" hx-swap-oob="true">')[1].split("</div>")[0]
    assert "Line 2" in oob_html and "totale" in oob_html
    bad_json = admin_client.post(editor_url(customer, suffix="/preview"), headers=HX,
                                 data=form(sample="{nope")).get_data(as_text=True)
    assert "not valid JSON" in bad_json


def test_preview_uses_the_edited_sample_data(admin_client, make_customer):
    """Sample data typed as JSON feeds the preview."""
    customer, _ = make_customer()
    body = admin_client.post(editor_url(customer, suffix="/preview"), headers=HX, data=form(
        sample='{"order_number": "X-99", "total": "€ 3"}')).get_data(as_text=True)
    assert "Ordine X-99!" in body


def test_sandbox_escape_is_refused_with_a_clear_message(admin_client, make_customer):
    """`{{ ''.__class__.__mro__ }}` is shown as not allowed, never rendered, never saved."""
    customer, _ = make_customer()
    data = form(html="{{ ''.__class__.__mro__ }}")
    body = admin_client.post(editor_url(customer, suffix="/preview"), headers=HX,
                             data=data).get_data(as_text=True)
    assert "not allowed" in body and "__class__" in body and "object" not in body.split(
        "not allowed")[0][-20:]
    assert admin_client.post(editor_url(customer), data=data).status_code == 422
    assert db.session.scalar(db.select(db.func.count(TemplateVersion.id))) == 0


def test_saving_a_bad_template_answers_422_and_saves_nothing(admin_client, make_customer):
    """Errors come back beside the fields with the typed text kept; no template row appears."""
    customer, _ = make_customer()
    response = admin_client.post(editor_url(customer), data=form(html="<p>{% if x %}</p>"))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'aria-invalid="true"' in body and "field-error" in body and "Line 1" in body
    assert "&lt;p&gt;{% if x %}&lt;/p&gt;" in body
    assert db.session.scalar(db.select(db.func.count(Template.id))) == 0


def test_saving_creates_a_version_and_the_editor_shows_it(admin_client, make_customer, admin):
    """A valid save makes v1 by this admin; saving the same text again adds nothing."""
    customer, _ = make_customer()
    response = admin_client.post(editor_url(customer), data=form(note="shorter subject"))
    assert response.status_code == 302
    [version] = db.session.scalars(db.select(TemplateVersion)).all()
    assert version.number == 1 and version.created_by_id == admin.id
    assert version.note == "shorter subject" and version.text is None
    body = admin_client.get(editor_url(customer)).get_data(as_text=True)
    assert "override v1" in body and "shorter subject" in body
    admin_client.post(editor_url(customer), data=form())
    assert db.session.scalar(db.select(db.func.count(TemplateVersion.id))) == 1


def test_reset_and_restore_from_the_editor(admin_client, make_customer, admin):
    """Reset returns to the default; restore brings back v1 as v3; htmx gets a redirect."""
    customer, _ = make_customer()
    admin_client.post(editor_url(customer), data=form(subject="One"))
    admin_client.post(editor_url(customer), data=form(subject="Two"))
    restored = admin_client.post(editor_url(customer, suffix="/versions/1/restore"), headers=HX)
    assert restored.headers["HX-Redirect"].endswith(editor_url(customer))
    assert service.current_source(customer, "order_closed", "it")["subject"] == "One"
    reset = admin_client.post(editor_url(customer, suffix="/reset"), headers=HX)
    assert reset.status_code == 204
    assert "chiuso" in service.current_source(customer, "order_closed", "it")["subject"]
    assert admin_client.post(editor_url(customer, suffix="/versions/9/restore")).status_code == 404


def test_version_page_shows_the_diff_from_the_previous_version(admin_client, make_customer):
    """v2's page marks the removed and added subject lines."""
    customer, _ = make_customer()
    admin_client.post(editor_url(customer), data=form(subject="One"))
    admin_client.post(editor_url(customer), data=form(subject="Two"))
    body = admin_client.get(editor_url(customer, suffix="/versions/2")).get_data(as_text=True)
    assert '<span class="diff-del">-One</span>' in body
    assert '<span class="diff-add">+Two</span>' in body
    assert "Restore this version" not in body  # v2 is in use


def test_send_test_from_the_editor_links_to_the_message(admin_client, make_customer, relay):
    """The test fragment reports the outcome and links to /log/<public id>."""
    customer, _ = make_customer()
    response = admin_client.post(editor_url(customer, suffix="/test"), headers=HX,
                                 data=form(to="qa@example.com"))
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    [got] = relay.wait_for(1)
    assert got.message["Subject"] == "Ordine ORD-2026-00421!"
    assert re.search(r'href="/log/[0-9A-Za-z_-]+"', body)
    assert db.session.scalar(db.select(Message)).test  # shown as a test email in the Log
    refused = admin_client.post(editor_url(customer, suffix="/test"), headers=HX,
                                data=form(to="not an address"))
    assert refused.status_code == 422 and "field-error" in refused.get_data(as_text=True)


def test_saving_needs_the_csrf_token_the_page_carries(admin_client, make_customer, app):
    """With CSRF on, a save without the token is refused; the form's own token is accepted."""
    customer, _ = make_customer()
    app.config["WTF_CSRF_ENABLED"] = True
    page = admin_client.get(editor_url(customer)).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert admin_client.post(editor_url(customer), data=form()).status_code == 400
    assert db.session.scalar(db.select(db.func.count(TemplateVersion.id))) == 0
    assert admin_client.post(editor_url(customer), data=form(csrf_token=token)).status_code == 302
    assert admin_client.post(editor_url(customer, suffix="/preview"), data=form(),
                             headers={**HX, "X-CSRFToken": token}).status_code == 200
