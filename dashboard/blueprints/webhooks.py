"""The webhook section of a customer's page: where its delivery events go, the signing
secret (shown once), the last deliveries, a test event. Support may look; admins manage."""
from __future__ import annotations

from flask import Blueprint, abort, request
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from ..auth import roles
from ..htmx import render
from ..models import Customer
from ..services import ServiceError
from ..services.accounts import customers
from ..services.delivery.credentials import CredentialsError
from ..services.webhooks import endpoints

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _customer(code: str) -> Customer:
    customer = customers.by_code(code)
    if customer is None:
        abort(404)
    return customer


def _respond(customer: Customer, status: int = 200, **extra):
    """The section for htmx; the customer's whole page otherwise (a secret is shown there)."""
    from .customers import _context as customer_context

    return render("customers/detail.html", "webhooks/_section.html", status=status,
                  **customer_context(customer, **endpoints.page_context(customer, **extra)))


@bp.route("/<code>", methods=["POST"])
@roles("admin")
def save(code: str):
    """Set the endpoint's address; a new endpoint's secret is shown this once."""
    customer = _customer(code)
    url = request.form.get("url", "")
    try:
        endpoint, secret = endpoints.configure(customer, url, current_user)
    except ServiceError as exc:
        return _respond(customer, 422, webhook_errors={exc.field or "url": exc.message},
                        webhook_url=url)
    message = (_("Webhook created: copy the signing secret now, it will not be shown again.")
               if secret else _("Webhook address saved."))
    return _respond(customer, webhook_secret=secret, webhook_message=message,
                    webhook_url=endpoint.url)


@bp.route("/<code>/rotate", methods=["POST"])
@roles("admin")
def rotate(code: str):
    """A new signing secret, shown this once; the previous one signs too for a day."""
    customer = _customer(code)
    endpoint = endpoints.for_customer(customer) or abort(404)
    secret = endpoints.rotate_secret(endpoint, current_user)
    return _respond(customer, webhook_secret=secret, webhook_message=_(
        "New signing secret: copy it now, it will not be shown again. The previous secret "
        "keeps signing beside it for one day."))


@bp.route("/<code>/resume", methods=["POST"])
@roles("admin")
def resume(code: str):
    """Send again to a paused endpoint."""
    customer = _customer(code)
    endpoint = endpoints.for_customer(customer) or abort(404)
    waiting = endpoints.resume(endpoint, current_user)
    return _respond(customer, webhook_message=ngettext(
        "Webhook resumed: %(num)d waiting event goes out now.",
        "Webhook resumed: %(num)d waiting events go out now.", waiting))


@bp.route("/<code>/test", methods=["POST"])
@roles("admin")
def test(code: str):
    """POST a signed `test` event now and show the endpoint's answer."""
    customer = _customer(code)
    endpoint = endpoints.for_customer(customer) or abort(404)
    try:
        event = endpoints.send_test(endpoint)
    except CredentialsError as exc:
        return _respond(customer, 422, webhook_errors={"secret": exc.message})
    return _respond(customer, webhook_test=event)


@bp.route("/<code>/delete", methods=["POST"])
@roles("admin")
def delete(code: str):
    """Remove the webhook and the events still waiting for it."""
    customer = _customer(code)
    endpoint = endpoints.for_customer(customer) or abort(404)
    endpoints.remove(endpoint, current_user)
    return _respond(customer, webhook_message=_("Webhook removed: no more events are sent."))
