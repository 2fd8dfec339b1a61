"""The sign-in pages: plain, accessible HTML with everything inline (no assets from anywhere).

Every value is escaped. The page reads fine without JavaScript; a few lines of script add
the copy button and the countdown. A per-response nonce lets the Content-Security-Policy
forbid every other script and style.
"""

from __future__ import annotations

import secrets
import time
from html import escape
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"
# Read once: inlined into each page (with a nonce), so the page loads nothing from anywhere.
STYLE = (STATIC / "signin.css").read_text()
SCRIPT = (STATIC / "signin.js").read_text()


def headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def page(title: str, body: str, *, script: bool = False) -> tuple[str, dict[str, str]]:
    nonce = secrets.token_urlsafe(16)
    js = f'<script nonce="{nonce}">{SCRIPT}</script>' if script else ""
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · openfaas-iam</title>
<style nonce="{nonce}">{STYLE}</style>
</head>
<body>
<header>
<span class="logo">openfaas-iam</span><span class="tag">Identity and Access Management for OpenFaaS</span>
</header>
<main>
{body}
</main>
{js}
</body>
</html>
"""
    return html, headers(nonce)


def landing(base: str, issuer_name: str) -> tuple[str, dict[str, str]]:
    body = f"""<section>
<h1>Sign in to OpenFaaS</h1>
<p class="muted">Sign in with your organisation's account ({escape(issuer_name)}) to get a short-lived OpenFaaS token
for <code>faas-cli</code> and the API. You will see who you are, what you may do, and commands to paste.</p>
<div class="row"><a class="button" href="{escape(base)}/login">Sign in</a></div>
</section>"""
    return page("Sign in", body)


def signed_in(
    *,
    base: str,
    claims: dict[str, Any],
    token: str,
    whoami: dict[str, Any] | None,
    whoami_error: str | None,
    gateway: str,
    csrf: str,
) -> tuple[str, dict[str, str]]:
    exp = int(claims.get("exp", 0))
    groups = claims.get("groups")
    groups_list = groups if isinstance(groups, list) else ([groups] if isinstance(groups, str) else [])
    groups_html = (
        "".join(f'<span class="pill">{escape(str(g))}</span>' for g in groups_list) or '<span class="muted">none</span>'
    )
    policies = claims.get("policy") or []
    policies_html = (
        "".join(f'<span class="pill">{escape(str(p))}</span>' for p in policies) or '<span class="muted">none</span>'
    )
    if whoami is not None:
        rows = "".join(
            f"<tr><td>{escape(p.get('policy', ''))}</td><td>{escape(p.get('sid', ''))}</td>"
            f'<td class="{"allow" if p.get("effect") == "Allow" else "deny"}">{escape(p.get("effect", ""))}</td>'
            f"<td>{'<br>'.join(escape(a) for a in p.get('actions', []))}</td>"
            f"<td>{'<br>'.join(f'<code>{escape(r)}</code>' for r in p.get('resources', []))}</td></tr>"
            for p in whoami.get("permissions", [])
        )
        permissions = (
            '<table><caption class="muted caption">What this token may do, as iam-authz decides it</caption>'
            '<thead><tr><th scope="col">Policy</th><th scope="col">Statement</th><th scope="col">Effect</th>'
            f'<th scope="col">Actions</th><th scope="col">Resources</th></tr></thead><tbody>{rows}</tbody></table>'
        )
    else:
        reason = escape(whoami_error or "")
        permissions = f'<p class="muted">The effective permissions could not be loaded from iam-authz: {reason}</p>'
    display_name = str(claims.get("name") or claims.get("preferred_username") or claims.get("email") or "-")
    expires_text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(exp))
    body = f"""<section>
<h1>You are signed in</h1>
<dl>
<dt>Subject</dt><dd><code id="subject">{escape(str(claims.get("sub", "")))}</code></dd>
<dt>Issuer</dt><dd><code>{escape(str(claims.get("fed:iss", "")))}</code></dd>
<dt>Name</dt><dd>{escape(display_name)}</dd>
<dt>Groups</dt><dd>{groups_html}</dd>
<dt>Policies</dt><dd id="policies">{policies_html}</dd>
<dt>Expires</dt><dd><time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))}">{expires_text}</time>
 <span class="pill" id="countdown" data-expires="{exp}" aria-live="polite"></span></dd>
</dl>
</section>
<section>
<h2>Your permissions</h2>
{permissions}
</section>
<section>
<h2><label for="token">Your OpenFaaS token</label></h2>
<textarea id="token" readonly spellcheck="false" aria-describedby="token-help">{escape(token)}</textarea>
<p id="token-help" class="muted">Keep it to yourself: it acts as you until it expires.</p>
<div class="row"><button type="button" data-copy="token">Copy token</button></div>
</section>
<section>
<h2>Use it</h2>
<pre><code>export OPENFAAS_TOKEN='{escape(token)}'
export OPENFAAS_URL='{escape(gateway)}'
faas-cli list --gateway "$OPENFAAS_URL" --token "$OPENFAAS_TOKEN"</code></pre>
</section>
<section>
<form method="post" action="{escape(base)}/logout">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<button type="submit" class="secondary">Sign out</button>
</form>
</section>"""
    return page("Signed in", body, script=True)


def error(base: str, title: str, message: str, detail: str | None = None) -> tuple[str, dict[str, str]]:
    extra = f'<p class="muted">Details for your platform team: <code>{escape(detail)}</code></p>' if detail else ""
    body = f"""<section class="error" role="alert">
<h1>{escape(title)}</h1>
<p>{escape(message)}</p>
{extra}
<div class="row"><a class="button" href="{escape(base)}/login">Sign in again</a></div>
</section>"""
    return page(title, body)


def signed_out(base: str) -> tuple[str, dict[str, str]]:
    body = f"""<section>
<h1>You are signed out</h1>
<p class="muted">Your session has ended, also for any copy of it. Tokens you copied stay valid until they expire.</p>
<div class="row"><a class="button" href="{escape(base)}/login">Sign in</a></div>
</section>"""
    return page("Signed out", body)


def wrong_origin(origin: str) -> tuple[str, dict[str, str]]:
    """The page on the gateway's shared origin: no token, no cookie, a link to where it lives."""
    if origin:
        where = f'<p>Sign in at <a href="{escape(origin)}/">{escape(origin)}</a>, the sign-in page\'s own address.</p>'
    else:
        where = (
            '<p class="muted">The platform team has not configured its address yet '
            "(<code>signin_origin</code> for iam-token).</p>"
        )
    body = f"""<section class="error" role="alert">
<h1>Sign-in is not served here</h1>
<p>This address is shared with every function on the gateway, so a token shown here could be read by
any of them. The sign-in page only answers on its own origin.</p>
{where}
</section>"""
    return page("Sign-in is not served here", body)


def signing_in(base: str) -> tuple[str, dict[str, str]]:
    """After the callback: a same-site step to the page, so the `SameSite=Strict` session cookie is sent.

    The IdP's redirect to /callback is a cross-site navigation; a redirect from there would
    still count as cross-site and the browser would hold the new session cookie back.
    """
    html, headers = page(
        "Signing in",
        f"""<section>
<h1>Signing you in…</h1>
<div class="row"><a class="button" href="{escape(base)}/">Continue</a></div>
</section>""",
    )
    html = html.replace("<head>\n", f'<head>\n<meta http-equiv="refresh" content="0;url={escape(base)}/">\n', 1)
    return html, headers


def confirm_sign_out(base: str, csrf: str) -> tuple[str, dict[str, str]]:
    """GET /logout: a button, never a sign-out (a link or image elsewhere must not end a session)."""
    body = f"""<section>
<h1>Sign out?</h1>
<p class="muted">This ends your session in every browser that has a copy of it.</p>
<form method="post" action="{escape(base)}/logout">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<button type="submit">Sign out</button>
</form>
</section>"""
    return page("Sign out", body)
