"""One Jinja environment for every page, with gettext bound to the request's language."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from app.notes import localized
from app.web import i18n
from app.web.flow_view import actor_label, actor_role, explain
from app.web.resources import TEMPLATE_DIR
from app.web.stage_render import render_stage, stage_moves


def lang_query(request: Request, lang: str) -> str:
    """The current query string with only the language swapped (keeps ?step=, ?present=)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return urlencode([*params, ("lang", lang)])


def make_templates(static_url: Callable[[str], str] | None = None) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # every piece of mail text is escaped, always
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["actor_label"] = lambda actor: actor_label(actor, i18n.current_lang.get())
    env.globals["actor_role"] = actor_role
    env.globals["explain"] = explain
    # A note the app wrote is shown in the page's language; a protocol line as exchanged.
    env.globals["shown_text"] = lambda event: localized(event, i18n.current_lang.get())
    env.globals["current_lang"] = i18n.current_lang.get
    env.globals["lang_query"] = lang_query
    env.globals["render_stage"] = render_stage
    env.globals["stage_moves"] = stage_moves
    env.globals["HTMX"] = "vendor/htmx-2.0.11/htmx.min.js"
    # `static_url('js/flow.js')` → `/static/js/flow.<hash8>.js`, cached for a year.
    env.globals["static_url"] = static_url or (lambda rel: f"/static/{rel}")
    return Jinja2Templates(env=env)
