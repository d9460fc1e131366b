"""A matplotlib figure as inline ``<svg>``, the one form every page of this project draws with.

The console, the experiments' report and the load-test report embed their figures in the HTML
itself (self-contained pages that work offline). :func:`inline_svg` strips what an embedded figure
must not carry (XML prologue, metadata, namespaces), prefixes every id by the figure's key so that
two figures on a page never share one, and gives the figure an accessible title.
"""

from __future__ import annotations

import io
import re
from html import escape

from matplotlib.figure import Figure

__all__ = ["inline_svg"]

_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


def _rounded(match: re.Match[str]) -> str:
    return 'd="' + " ".join(re.sub(r"(\.\d\d)\d+", r"\1", match.group(1)).split()) + '"'


def inline_svg(fig: Figure, key: str, title: str, *, suptitle: bool = True, round_paths: bool = True) -> str:
    """``fig`` as an inline ``<svg>`` titled ``title``; ids prefixed by ``key``.

    ``suptitle`` also draws the title in the figure, left-aligned; ``round_paths`` keeps two decimals
    of path coordinates (a smaller page, and the same text for the same figure on every machine).
    """
    if suptitle:
        fig.suptitle(title, x=0.01, ha="left")
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    if round_paths:
        text = re.sub(r'\bd="([^"]*)"', _rounded, text)
    text = re.sub(r'\bid="', f'id="{key}-', text)
    text = text.replace("url(#", f"url(#{key}-").replace('href="#', f'href="#{key}-')
    head_end = text.index(">") + 1
    head = text[:head_end].replace("<svg ", f'<svg role="img" aria-labelledby="{key}-title" ', 1)
    return f'{head}\n <title id="{key}-title">{escape(title)}</title>{text[head_end:]}'
