"""Italian and English: complete catalogs, the user's choice, the browser's default."""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.pofile import read_po

from dashboard.extensions import db
from dashboard.i18n import SOURCE_DIR, compile_catalogs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "i18n.sh"


def script_keywords() -> dict:
    """The gettext keywords scripts/i18n.sh passes to pybabel, so both extract the same."""
    line = next(row for row in SCRIPT.read_text().splitlines() if row.startswith("KEYWORDS=("))
    keywords = dict(DEFAULT_KEYWORDS)
    keywords.update(parse_keywords(re.findall(r"-k\s+(\S+?)\)?(?=\s|$)", line)))
    return keywords


@pytest.fixture(scope="module")
def source_messages() -> dict[tuple[str, str | None], str]:
    """Every translatable string in the sources, extracted now: (msgid, context) -> where."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=script_keywords()
    ):
        msgid = message if isinstance(message, str) else message[0]
        if msgid:
            found.setdefault((msgid, context), f"{filename}:{lineno}")
    return found


def literal_gettext_calls() -> dict[str, str]:
    """Every gettext-style call with a literal msgid in the Python sources, found by `ast`."""
    keywords = script_keywords()
    calls = {}
    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in keywords:
                continue
            spec = keywords[name] or (1,)
            position = next((p for p in spec if isinstance(p, int)), 1) - 1
            if position < len(node.args):
                arg = node.args[position]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    calls.setdefault(arg.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return calls


def catalog(lang: str):
    """The committed .po catalog of one language."""
    with (SOURCE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=lang)


def is_translated(message) -> bool:
    """Every form of the message has a translation."""
    strings = message.string if isinstance(message.string, (tuple, list)) else [message.string]
    return bool(strings) and all(s.strip() for s in strings)


def test_the_sources_have_strings_to_translate(source_messages):
    """The extraction sees templates, views and lazy labels (it is not silently empty)."""
    ids = {msgid for msgid, _ in source_messages}
    assert {"Log in", "Wrong email or password.", "Required role: %(roles)s.", "held"} <= ids


def test_pybabel_sees_every_gettext_call(source_messages):
    """A gettext nested inside another's arguments is skipped by pybabel: hoist it out."""
    extracted = {msgid for msgid, _ in source_messages}
    unseen = sorted(f"{where} {msgid!r}" for msgid, where in literal_gettext_calls().items()
                    if msgid not in extracted)
    assert unseen == []


def by_msgid(item) -> tuple[str, str]:
    """Sort key of ((msgid, context), where): a message without context has context None."""
    (msgid, context), _where = item
    return msgid, context or ""


def test_every_string_is_translated_into_italian(source_messages):
    """Each msgid in the code has a non-fuzzy, non-empty Italian translation."""
    italian = catalog("it")
    problems = []
    for (msgid, context), where in sorted(source_messages.items(), key=by_msgid):
        message = italian.get(msgid, context)
        if message is None:
            problems.append(f"missing   {msgid!r} ({where})")
        elif message.fuzzy:
            problems.append(f"fuzzy     {msgid!r} ({where})")
        elif not is_translated(message):
            problems.append(f"empty     {msgid!r} ({where})")
    assert problems == [], "run scripts/i18n.sh and translate:\n" + "\n".join(problems)


def test_every_string_is_in_the_english_catalog(source_messages):
    """Each msgid in the code is present, and not fuzzy, in the English catalog."""
    english = catalog("en")
    problems = [
        f"{msgid!r} ({where})"
        for (msgid, context), where in sorted(source_messages.items(), key=by_msgid)
        if english.get(msgid, context) is None or english.get(msgid, context).fuzzy
    ]
    assert problems == [], "run scripts/i18n.sh:\n" + "\n".join(problems)


@pytest.mark.parametrize("lang", ["it", "en"])
def test_translations_keep_the_placeholders(lang):
    """A translation with a wrong %(name)s would crash or lose data at render time."""
    problems = [
        f"{message.id!r}: {'; '.join(str(e) for e in errors)}"
        for message, errors in catalog(lang).check()
        if errors and not message.fuzzy  # fuzzy entries are not compiled, hence never used
    ]
    assert problems == []


def test_catalogs_are_compiled_at_start_and_not_committed(tmp_path):
    """The .mo files are built from the .po files into the instance folder, never shipped."""
    compile_catalogs(tmp_path)
    for lang in ("it", "en"):
        assert (tmp_path / lang / "LC_MESSAGES" / "messages.mo").stat().st_size > 0
    assert list(SOURCE_DIR.rglob("*.mo")) == []


def test_the_catalog_script_is_executable():
    """scripts/i18n.sh, documented in docs/DEVELOPMENT.md, can be run as is."""
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.parametrize("accept, expected", [
    ("en", "Log in"),
    ("en-GB,en;q=0.9", "Log in"),
    ("it-IT,it;q=0.9,en;q=0.8", "Accedi"),
    ("de-DE,de;q=0.9,en;q=0.5", "Log in"),
    ("fr", "Accedi"),
    (None, "Accedi"),
])
def test_the_browser_language_is_the_default(client, accept, expected):
    """Before login the page follows Accept-Language, and Italian when nothing matches."""
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE", None)  # the suite's clients ask for English
    headers = {"Accept-Language": accept} if accept else {}
    html = client.get("/login", headers=headers).get_data(as_text=True)
    assert f"<title>{expected} · Postino</title>" in html


def test_a_user_who_picks_italian_sees_italian(app, make_user, login):
    """POST /language stores the choice; the navigation then speaks Italian."""
    user = make_user("support")
    client = login(app.test_client(), user)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert ">Suppressions<" in client.get("/").get_data(as_text=True)
    response = client.post("/language", data={"language": "it", "next": "/log/"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/log/"
    html = client.get("/").get_data(as_text=True)
    assert '<html lang="it"' in html
    assert ">Soppressioni<" in html and ">Registro invii<" in html and ">Esci<" in html
    db.session.refresh(user)
    assert user.language == "it"


@pytest.mark.parametrize("accept, lang, picked", [("en-US,en;q=0.9", "en", "English"),
                                                 ("it-IT,it;q=0.9", "it", "Italiano")])
def test_after_login_a_user_who_never_chose_follows_the_browser(app, make_user, login, accept,
                                                                 lang, picked):
    """No stored choice: the pages after login keep the browser's language, and the picker
    shows it; nothing is stored until the user picks."""
    user = make_user("support")
    assert user.language is None
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept
    login(client, user)
    html = client.get("/").get_data(as_text=True)
    assert f'<html lang="{lang}"' in html
    assert f'selected>{picked}</option>' in html
    db.session.refresh(user)
    assert user.language is None


def test_the_users_choice_wins_over_the_browser(app, make_user, login):
    """An English-speaking user on an Italian browser keeps English."""
    user = make_user("support", language="en")
    client = login(app.test_client(), user)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "it"
    html = client.get("/").get_data(as_text=True)
    assert ">Suppressions<" in html and ">Log out<" in html


def test_switching_back_to_english(app, make_user, login):
    """The choice can be changed back at any time."""
    user = make_user("billing", language="it")
    client = login(app.test_client(), user)
    client.post("/language", data={"language": "en"})
    assert ">Log out<" in client.get("/").get_data(as_text=True)


def test_an_unknown_language_is_refused_and_nothing_changes(app, make_user, login):
    """Only Italian and English can be picked."""
    user = make_user("support", language="en")
    client = login(app.test_client(), user)
    response = client.post("/language", data={"language": "xx"}, follow_redirects=True)
    assert "Unknown language." in response.get_data(as_text=True)
    db.session.refresh(user)
    assert user.language == "en"


def test_the_language_form_does_not_redirect_off_site(app, make_user, login):
    """The `next` of the language form follows only local paths."""
    client = login(app.test_client(), make_user("support"))
    response = client.post("/language", data={"language": "it", "next": "//evil.example/"})
    assert response.headers["Location"] == "/"
