"""django-post_office as a contender for bench/latency.py; runs inside its own venv.

    bench/.venv-post-office/bin/python bench/post_office_driver.py PORT WORKDIR CONTENT.json

Not part of Postino: bench/latency.py creates the venv (pip install django-post_office) and
talks to this script over stdin/stdout, one command a line:

    enqueue N   store N queued emails (the content of CONTENT.json), answers "ok"
    send        send_queued_mail_until_done() with post_office's defaults (5 threads per
                process, batches of 100, one process), answers "<seconds> <sent>"
    quit

Django runs on a SQLite file in WORKDIR; post_office's configuration is left at its
defaults, as a new user would run it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    port, workdir, content_file = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    content = json.loads(Path(content_file).read_text())
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": str(workdir / "post_office.sqlite3")}},
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=30,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
    import logging

    logging.disable(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from post_office import mail
    from post_office.models import STATUS, Email

    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "enqueue":
            count = int(command[1])
            for index in range(count):
                mail.send([f"buyer{index}@example.com"], content["from"],
                          subject=content["subject"], message=content["text"],
                          html_message=content["html"])
            print("ok", flush=True)
        elif command[0] == "send":
            before = Email.objects.filter(status=STATUS.sent).count()
            started = time.perf_counter()
            mail.send_queued_mail_until_done(lockfile=str(workdir / "post_office"))
            elapsed = time.perf_counter() - started
            sent = Email.objects.filter(status=STATUS.sent).count() - before
            print(f"{elapsed:.6f} {sent}", flush=True)
        elif command[0] == "quit":
            break


if __name__ == "__main__":
    main()
