#!/usr/bin/env bash
# Extract every translatable string and update the Italian and English catalogs.
# No compile step: .mo files are gitignored and dashboard/i18n.py compiles them at start.
# After running it, translate the new or fuzzy entries of
# dashboard/translations/it/LC_MESSAGES/messages.po; tests/test_i18n.py checks that you did.
set -euo pipefail
cd "$(dirname "$0")/.."

POT=dashboard/translations/messages.pot
DIR=dashboard/translations
# tests/test_i18n.py reads these -k flags, so keep them on this one line.
KEYWORDS=(-k _l -k lazy_gettext -k lazy_ngettext:1,2 -k lazy_pgettext:1c,2)

pybabel -q extract -F babel.cfg "${KEYWORDS[@]}" --sort-by-file --no-wrap \
    --project=Postino --copyright-holder="Postino" \
    -o "$POT" .

for lang in it en; do
    if [ -f "$DIR/$lang/LC_MESSAGES/messages.po" ]; then
        pybabel -q update -i "$POT" -d "$DIR" -l "$lang" --no-wrap --ignore-obsolete
    else
        pybabel -q init -i "$POT" -d "$DIR" -l "$lang" --no-wrap
    fi
done

# English is the source language: its catalog is the identity, never fuzzy.
python - "$DIR/en/LC_MESSAGES/messages.po" <<'PY'
import sys

from babel.messages.pofile import read_po, write_po

path = sys.argv[1]
with open(path, "rb") as fh:
    catalog = read_po(fh, locale="en")
for message in catalog:
    if not message.id:
        continue
    message.string = message.id
    message.flags.discard("fuzzy")
with open(path, "wb") as fh:
    write_po(fh, catalog, width=0, omit_header=False)
PY

echo "Catalogs updated. Untranslated or fuzzy Italian entries:"
python - "$DIR/it/LC_MESSAGES/messages.po" <<'PY'
import sys

from babel.messages.pofile import read_po

with open(sys.argv[1], "rb") as fh:
    catalog = read_po(fh, locale="it")
todo = [m for m in catalog if m.id and (m.fuzzy or not all(
    m.string if isinstance(m.string, tuple) else [m.string]))]
for message in todo:
    print("  " + (message.id if isinstance(message.id, str) else message.id[0]))
print(f"{len(todo)} to translate")
PY
