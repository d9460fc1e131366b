"""The engine's web console: server-rendered pages at ``/`` of ``sot engine --http``, live in the browser.

=============================  ====================================================================
part                           holds
=============================  ====================================================================
:mod:`.pages`                  :class:`Console`: one route per page, over the API's reads
:mod:`.render`                 the Jinja2 environment and its filters (ISO times, SLA countdowns)
:mod:`.charts`                 the overview's figures, matplotlib drawn as inline SVG
``templates/*.html``           the pages (Jinja2, autoescaped)
``static/``                    ``console.css``, ``console.js`` (refresh and countdowns), the icon
=============================  ====================================================================

Everything a page loads comes from the engine itself: no CDN, no web fonts, no build step.
"""

from __future__ import annotations

from support_engine.console.pages import STATIC, Console, is_page

__all__ = ["STATIC", "Console", "is_page"]
