"""The language a command speaks when not told: Indonesian on an Indonesian locale, else English."""

from __future__ import annotations

import os

LANGUAGES = ("id", "en")


def locale_lang(env: dict[str, str] | None = None) -> str:
    """'id' when the locale is Indonesian (id_ID.UTF-8, id), else 'en'. The first of LC_ALL, LC_MESSAGES and LANG
    that is set decides, as it does for every program that reads the locale."""
    env = dict(os.environ) if env is None else env
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "")
        if value:
            return "id" if value.lower().startswith(("id_", "id.", "id@", "in_")) or value.lower() == "id" else "en"
    return "en"
