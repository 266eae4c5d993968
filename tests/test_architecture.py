"""The house rules, read from the source with ast (docs/ARCHITECTURE.md draws them):
blueprints -> services -> models, and one-way dependencies between the service packages.

To add a service package: give it a one-line docstring in its __init__.py saying what it owns
and what it must not import, and a row in ALLOWED. Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "dashboard"
SERVICES = "dashboard.services"

# service package -> the other service packages it may import (dashboard.services itself,
# for ServiceError, is open to all). Read it bottom up: nothing imports what is above it.
ALLOWED: dict[str, set[str]] = {
    "core": set(),                       # settings, audit, timelines, the process name
    "content": {"core"},                 # templates and rendering
    "billing": {"core"},                 # interventions and invoicing
    "bounces": {"core"},                 # who is at fault, reports, the suppression list
    "delivery": {"core", "bounces"},     # the sending path: never operations or messages
    "messages": {"core", "content", "bounces", "delivery"},  # ingest, intake, log, resend
    # delivery webhooks (to come): read models and message events, may use delivery's
    # public helpers; operations' jobs call them.
    "webhooks": {"core", "delivery"},
    "operations": {"core", "content", "billing", "bounces", "delivery", "messages",
                   "webhooks"},          # jobs, health, alerts, Home, purge, the doctor
    "accounts": {"core", "content", "billing", "bounces", "delivery", "messages"},
}
# what no service module may import: the layers above, and the request being served
ABOVE_SERVICES = ("dashboard.blueprints", "dashboard.cli", "dashboard.worker",
                  "dashboard.demo", "dashboard.bounce_listener")
REQUEST_NAMES = {"request", "g", "session"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, str]]:
    """Every (imported module, imported name) of `source`, relative imports resolved;
    `name` is "" for `import x`."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1]
                                + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.extend((base, alias.name) for alias in node.names)
    return found


def service_package(dotted: str) -> str | None:
    """"delivery" for dashboard.services.delivery(.anything), None outside the packages."""
    parts = dotted.split(".")
    if dotted.startswith(SERVICES + ".") and len(parts) > 2:
        return parts[2]
    return None


def violations(module: str, found: list[tuple[str, str]]) -> list[str]:
    """What `module` imports against the rules."""
    problems = []
    own = service_package(module)
    in_services = module == SERVICES or module.startswith(SERVICES + ".")
    for base, name in found:
        target = f"{base}.{name}" if name else base
        if in_services:
            if any(target == above or target.startswith(above + ".") or base == above
                   for above in ABOVE_SERVICES):
                problems.append(f"{module} imports {target}: services never import the "
                                "blueprints, the CLI, the worker or the scheduler")
            if base == "flask" and name in REQUEST_NAMES:
                problems.append(f"{module} imports flask.{name}: the blueprint reads the "
                                "request and passes what the service needs")
        if module == "dashboard.models" and (target.startswith(SERVICES)
                                             or target.startswith("dashboard.blueprints")):
            problems.append(f"dashboard.models imports {target}: models import nothing above")
        other = service_package(base)
        if base == SERVICES:  # `from dashboard.services import delivery` (not ServiceError)
            other = name if name in ALLOWED or (DASHBOARD / "services" / name).is_dir() \
                else None
        if own is None or other is None or other == own:
            continue
        if other not in ALLOWED.get(own, set()):
            problems.append(f"{module} imports {target}: {own} may import "
                            f"{sorted(ALLOWED.get(own, set())) or 'no other package'}")
        elif name.startswith("_") or any(part.startswith("_") and part != "__init__"
                                         for part in base.split(".")):
            problems.append(f"{module} imports {target}: another package's private name")
    return problems


def sources():
    for path in sorted(DASHBOARD.rglob("*.py")):
        yield path, module_name(path)


def test_every_import_follows_the_layers_and_the_package_table():
    problems = []
    for path, module in sources():
        found = imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        problems.extend(violations(module, found))
    assert problems == []


def test_every_service_package_is_in_the_table_and_says_what_it_owns_in_one_line():
    packages = sorted(p.parent.name for p in (DASHBOARD / "services").glob("*/__init__.py"))
    assert packages, "no service packages found"
    missing = [name for name in packages if name not in ALLOWED]
    assert missing == [], "add these packages to ALLOWED"
    loose = [p.name for p in (DASHBOARD / "services").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "service modules belong in a package"
    for name in packages:
        doc = ast.get_docstring(ast.parse((DASHBOARD / "services" / name /
                                           "__init__.py").read_text(encoding="utf-8")))
        assert doc and "\n" not in doc.strip(), f"services/{name}: a one-line docstring"
        assert "import" in doc, f"services/{name}: say what it must not import"


def test_the_table_has_no_circle():
    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in ALLOWED.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False
    assert [name for name in ALLOWED if reaches(name, name, set())] == []


def test_delivery_never_imports_operations_or_messages():
    assert not ALLOWED["delivery"] & {"operations", "messages", "accounts", "webhooks"}


@pytest.mark.parametrize("module, source, words", [
    ("dashboard.services.delivery.sweep", "from ..operations import alerts\n",
     "delivery may import"),
    ("dashboard.services.delivery.sweep", "def f():\n    from ..operations import jobs\n",
     "delivery may import"),
    ("dashboard.services.bounces.suppressions", "from ..messages.resend import resend\n",
     "bounces may import"),
    ("dashboard.services.operations.jobs", "from ...worker.scheduler import run_now\n",
     "never import the blueprints"),
    ("dashboard.services.messages.ingest", "from flask import request\n",
     "the blueprint reads the request"),
    ("dashboard.services.webhooks.send", "from ..delivery.sweep import _record\n",
     "private name"),
    ("dashboard.services.webhooks.send", "from ..operations import jobs\n",
     "webhooks may import"),
    ("dashboard.models", "from .services.core import settings\n", "models import nothing"),
])
def test_the_check_sees_a_broken_rule(module, source, words):
    problems = violations(module, imports(source, module))
    assert len(problems) == 1 and words in problems[0]


def test_the_check_lets_the_allowed_through():
    for module, source in [
        ("dashboard.services.webhooks.send", "from ..delivery.verp import bounce_domain\n"),
        ("dashboard.services.operations.jobs", "from ..webhooks import deliver\n"),
        ("dashboard.services.delivery.sweep", "from .. import ServiceError\n"),
        ("dashboard.blueprints.api", "from ..services.messages import ingest\n"),
    ]:
        assert violations(module, imports(source, module)) == []
