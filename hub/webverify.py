"""The offline bundle verifier page (static/verify.html with its scripts inlined) as one self-contained file."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "verify.html"
_SCRIPT = re.compile(r'<script src="(verify/[a-z0-9-]+\.js)"></script>')


@cache
def standalone_page() -> str:
    """verify.html with each `<script src>` replaced by the script itself, so that the one file works alone
    (beside a bundle, from file://, with no network)."""

    def inline(match: re.Match[str]) -> str:
        source = (STATIC / match.group(1)).read_text(encoding="utf-8")
        if "</script" in source.lower():
            raise ValueError(f"{match.group(1)} contains '</script' and cannot be inlined")
        # data-src: the page runs its checks in a worker made from these scripts (static/verify/ui.js).
        return f'<script data-src="{match.group(1)}">/* {match.group(1)} */\n{source}\n</script>'

    html = PAGE.read_text(encoding="utf-8")
    page, count = _SCRIPT.subn(inline, html)
    if count == 0:
        raise ValueError(f"{PAGE} references no verify/*.js script")
    return page
