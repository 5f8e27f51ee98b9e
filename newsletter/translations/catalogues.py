"""Keep the catalogues in step with the code: extract the strings, merge them into each .po.

Run from a checkout: `python -m newsletter.translations` (docs/translating.md). The .po
files are written without a header, in msgid order and without source locations, so two
branches adding strings merge like any text file.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.messages.pofile import write_po

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
LOCALES = ("de", "fr", "es", "pt", "ja", "ar", "he")


def extract(root: Path = CHECKOUT) -> Catalog:
    """Return every translatable string in the code and templates (babel.cfg says where)."""
    with (root / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    template = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
        str(root), method_map, options_map
    ):
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def po_path(locale: str) -> Path:
    """Return the path of a locale's catalogue."""
    return HERE / locale / "LC_MESSAGES" / "messages.po"


def read(locale: str) -> Catalog:
    """Read a locale's catalogue (an empty one if it does not exist yet)."""
    path = po_path(locale)
    if not path.exists():
        return Catalog(locale=locale)
    with path.open("rb") as source:
        return read_po(source, locale=locale)


def write(catalog: Catalog, locale: str) -> None:
    """Write a catalogue in the stable form described above."""
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=0, no_location=True, omit_header=True, sort_output=True)
    path = po_path(locale)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def missing(template: Catalog, catalog: Catalog) -> list[str]:
    """Return the template's msgids that the catalogue lacks or leaves untranslated/fuzzy."""
    gaps = []
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, message.context)
        strings = found.string if found else None
        if isinstance(strings, tuple | list):
            empty = not all(strings)
        else:
            empty = not strings
        if found is None or empty or found.fuzzy:
            gaps.append(message.id if isinstance(message.id, str) else message.id[0])
    return gaps


def update() -> dict[str, list[str]]:
    """Merge the extracted strings into every catalogue; return what is left to translate."""
    template = extract()
    report = {}
    for locale in LOCALES:
        catalog = read(locale)
        catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
        # Strings no longer in the code go (git keeps them).
        catalog.obsolete.clear()
        write(catalog, locale)
        report[locale] = missing(template, catalog)
    return report
