"""The sign-in pages: plain, accessible HTML with everything inline (no assets from anywhere).

Every value is escaped. The page reads fine without JavaScript; a few lines of script add
the copy button and the countdown. A per-response nonce lets the Content-Security-Policy
forbid every other script and style.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from shlex import quote as shell_quote
from typing import Any

from openfaas_iam.engine.policy import patterns_overlap, resource_matches, split_resource
from openfaas_iam.model.conditions import glob_regex

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


def landing(base: str, idp_name: str) -> tuple[str, dict[str, str]]:
    body = f"""<section>
<h1>Sign in to OpenFaaS</h1>
<p class="muted">Sign in with your organisation's account at <strong id="idp">{escape(idp_name)}</strong> to get a
short-lived OpenFaaS token for <code>faas-cli</code> and the API. You will see who you are, what you may do, and
commands to paste.</p>
<div class="row"><a class="button" href="{escape(base)}/login">Sign in with {escape(idp_name)}</a></div>
</section>"""
    return page("Sign in", body)


@dataclass(frozen=True)
class Suggestion:
    """One command the page offers: `why` says which permission makes it work."""

    command: str
    why: str


@dataclass(frozen=True)
class FunctionTokenResult:
    """What the function-token form got: a token for `audience`, or the exchange's refusal."""

    audience: str
    token: str = ""
    expires_in: int = 0
    refused: str = ""


def _statements(whoami: dict[str, Any] | None, effect: str, action: str) -> list[str]:
    """Rendered resource patterns of the statements with `effect` that grant `action`."""
    out: list[str] = []
    for p in (whoami or {}).get("permissions", []):
        if p.get("effect", "Allow") == effect and action in p.get("actions", []):
            out.extend(str(r) for r in p.get("resources", []))
    return out


def _example(pattern: str, namespace: str) -> str | None:
    """A function name in `namespace` that the pattern covers, with NAME for its free part, or None."""
    try:
        ns, fn = split_resource(pattern)
    except ValueError:
        return None
    if not glob_regex(ns).fullmatch(namespace):
        return None
    name = fn.replace("*", "NAME").replace("?", "X")
    return name if resource_matches(pattern, f"{namespace}:{name}") else None


def allowed_names(whoami: dict[str, Any] | None, action: str, namespace: str) -> list[str]:
    """Example function names in `namespace` on which `action` is allowed and not denied.

    Read from the effective permissions iam-authz reported (/whoami): each Allow pattern in
    the namespace becomes an example (`team-a-*` -> `team-a-NAME`), unless a Deny covers the
    whole pattern or the example. So a suggestion is a command the proxy will let through.
    """
    denies = _statements(whoami, "Deny", action)
    names: list[str] = []
    for pattern in _statements(whoami, "Allow", action):
        example = _example(pattern, namespace)
        if example is None or example in names:
            continue
        whole = f"{namespace}:{split_resource(pattern)[1]}" if pattern != "*" else f"{namespace}:*"
        if any(resource_matches(d, whole) or resource_matches(d, f"{namespace}:{example}") for d in denies):
            continue
        names.append(example)
    return names


def may_on_namespace(whoami: dict[str, Any] | None, action: str, namespace: str) -> bool:
    """Whether `action` is allowed on the whole namespace (`ns:*`) with no Deny overlapping it (fail closed)."""
    whole = f"{namespace}:*"
    if any(patterns_overlap(d, whole) for d in _statements(whoami, "Deny", action)):
        return False
    return any(resource_matches(a, whole) for a in _statements(whoami, "Allow", action))


def suggested_commands(whoami: dict[str, Any] | None, namespace: str, gateway: str) -> list[Suggestion]:
    """faas-cli commands that work for this person on CE (one namespace), through the proxy at `gateway`.

    Issue 17: a `faas-cli list` offered to everyone answers 403 to someone whose access is a
    name prefix, which reads as "the sign-in did not work". Each command is offered only when
    the effective permissions allow its action (the README's table of what each command needs).
    """
    gw = shell_quote(gateway)
    out: list[Suggestion] = []
    if may_on_namespace(whoami, "Function:List", namespace):
        out.append(Suggestion(f"faas-cli list --gateway {gw}", f"Function:List on {namespace}:*"))
    for action, template in (
        ("Function:Get", "faas-cli describe {name} --gateway {gw}"),
        ("Function:Logs", "faas-cli logs {name} --gateway {gw}"),
    ):
        for name in allowed_names(whoami, action, namespace)[:1]:
            out.append(Suggestion(template.format(name=name, gw=gw), f"{action} on {namespace}:{name}"))
    deployable = [
        n
        for n in allowed_names(whoami, "Function:Update", namespace)
        if n in allowed_names(whoami, "Function:Create", namespace)
    ]
    for name in deployable[:1]:
        out.append(
            Suggestion(
                f"faas-cli deploy --image IMAGE --name {name} --gateway {gw}",
                f"Function:Create and Function:Update on {namespace}:{name}",
            )
        )
    if may_on_namespace(whoami, "Secret:List", namespace):
        out.append(Suggestion(f"faas-cli secret list --gateway {gw}", f"Secret:List on {namespace}:*"))
    return out


def auth_command(gateway: str, authority: str, client_id: str) -> str:
    """`openfaas-iam auth` for this page's IdP and the proxy: saves a token in faas-cli's config for `gateway`."""
    return (
        f"openfaas-iam auth --gateway {shell_quote(gateway)} \\\n"
        f"  --authority {shell_quote(authority)} --client-id {shell_quote(client_id)}"
    )


def _secret_box(field: str, label: str, value: str) -> str:
    """A token behind a disclosure: not in the page's visible text until "Show" is pressed, and once only.

    `<details>` works without JavaScript; the copy button (shown by the script) copies the
    value without revealing it.
    """
    return f"""<details class="secret" id="{field}-box">
<summary>Show {escape(label)}</summary>
<label for="{field}" class="visually-hidden">{escape(label.capitalize())}</label>
<textarea id="{field}" readonly spellcheck="false" autocomplete="off">{escape(value)}</textarea>
</details>
<div class="row"><button type="button" data-copy="{field}" hidden>Copy {escape(label)}</button></div>"""


def _function_form(
    base: str,
    csrf: str,
    whoami: dict[str, Any] | None,
    namespace: str,
    gateway_url: str,
    result: FunctionTokenResult | None,
) -> str:
    invokable = allowed_names(whoami, "Function:Invoke", namespace)
    patterns = ", ".join(f"<code>{escape(namespace)}:{escape(n)}</code>" for n in invokable)
    if not invokable and result is None:
        return f"""<section aria-labelledby="fn-heading" id="function-token">
<h2 id="fn-heading">Function tokens</h2>
<p class="muted">None of your policies lets you invoke a function in <code>{escape(namespace)}</code>
(<code>Function:Invoke</code>), so there is no function token to get.</p>
</section>"""
    answer = ""
    if result is not None and result.refused:
        answer = f"""<div class="notice bad" role="alert" id="fn-error">
<p><strong>Refused:</strong> {escape(result.refused)}</p></div>"""
    elif result is not None:
        ns, _, fn = result.audience.partition(":")
        url = f"{gateway_url}/function/{fn if ns == 'openfaas-fn' else f'{fn}.{ns}'}"
        answer = f"""<div class="notice ok" role="status" id="fn-result">
<p>A function token for <code>{escape(result.audience)}</code>, valid {max(1, result.expires_in // 60)} min.</p>
{_secret_box("fn-token", "function token", result.token)}
<pre><code>curl -H "Authorization: Bearer $FUNCTION_TOKEN" {escape(shell_quote(url))}</code></pre>
</div>"""
    value = escape(result.audience) if result is not None else ""
    return f"""<section aria-labelledby="fn-heading" id="function-token">
<h2 id="fn-heading">Get a function token</h2>
<p class="muted">To call a function that checks tokens (<code>Function:Invoke</code>).
You may invoke {patterns or "none"}.</p>
<form method="post" action="{escape(base)}/function-token#function-token" class="inline">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<label for="audience">Function (<code>namespace:name</code>, or a name in {escape(namespace)})</label>
<div class="row"><input type="text" id="audience" name="audience" required maxlength="200" autocomplete="off"
 spellcheck="false"
 placeholder="{escape(namespace)}:{escape(invokable[0] if invokable else "NAME")}" value="{value}">
<button type="submit">Get function token</button></div>
</form>
{answer}
</section>"""


def signed_in(
    *,
    base: str,
    claims: dict[str, Any],
    token: str,
    whoami: dict[str, Any] | None,
    whoami_error: str | None,
    gateway: str,
    csrf: str,
    idp_name: str = "",
    authority: str = "",
    client_id: str = "",
    namespace: str = "openfaas-fn",
    gateway_url: str = "",
    function_token: FunctionTokenResult | None = None,
) -> tuple[str, dict[str, str]]:
    """The signed-in page: commands first, then the token (hidden until asked for), then the details.

    `gateway` is the authorizing proxy's host root (what faas-cli's --gateway takes); every
    command shown is one this person's permissions let through it.
    """
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
            '<div class="scroll" role="region" aria-label="Effective permissions" tabindex="0">'
            '<table><caption class="muted caption">What this token may do, as iam-authz decides it</caption>'
            '<thead><tr><th scope="col">Policy</th><th scope="col">Statement</th><th scope="col">Effect</th>'
            '<th scope="col">Actions</th><th scope="col">Resources</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>"
        )
        suggestions = suggested_commands(whoami, namespace, gateway)
        if suggestions:
            lines = "\n".join(
                f'<span class="comment"># {escape(x.why)}</span>\n{escape(x.command)}' for x in suggestions
            )
            then = f'<p>Then, as your policies allow:</p>\n<pre id="commands"><code>{lines}</code></pre>'
        else:
            then = (
                f'<p id="commands">None of your policies allows a <code>faas-cli</code> command in '
                f"<code>{escape(namespace)}</code>. Ask your platform team for a Role.</p>"
            )
    else:
        reason = escape(whoami_error or "")
        permissions = f'<p class="muted">The effective permissions could not be loaded from iam-authz: {reason}</p>'
        then = f'<p id="commands" class="muted">Commands appear here once your permissions load ({reason}).</p>'
    display_name = str(claims.get("name") or claims.get("preferred_username") or claims.get("email") or "-")
    expires_text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(exp))
    auth = escape(auth_command(gateway, authority, client_id))
    subject = escape(str(claims.get("sub", "")))
    named, closing = (f"<strong>{escape(display_name)}</strong> (", ")") if display_name != "-" else ("", "")
    body = f"""<section aria-labelledby="who">
<h1 id="who">You are signed in</h1>
<p class="lead">as {named}<code id="subject">{subject}</code>{closing}
with <strong id="idp">{escape(idp_name)}</strong>. Your token expires
<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))}">{expires_text}</time>
<span class="pill" id="countdown" data-expires="{exp}" role="timer"></span></p>
</section>
<section aria-labelledby="use-heading">
<h2 id="use-heading">Use faas-cli</h2>
<p>Save a token for <code>faas-cli</code> (you sign in once more, from the terminal):</p>
<pre id="auth-command"><code>{auth}</code></pre>
{then}
<p class="muted">Or pass the token below to a single command with <code>--token</code>.</p>
</section>
<section aria-labelledby="token-heading">
<h2 id="token-heading">Your OpenFaaS token</h2>
<p id="token-help" class="muted">Keep it to yourself: it acts as you until it expires.</p>
{_secret_box("token", "token", token)}
</section>
{_function_form(base, csrf, whoami, namespace, gateway_url, function_token)}
<section aria-labelledby="details-heading">
<h2 id="details-heading">Who you are</h2>
<dl>
<dt>Subject</dt><dd><code>{escape(str(claims.get("sub", "")))}</code></dd>
<dt>Issuer</dt><dd><code>{escape(str(claims.get("fed:iss", "")))}</code></dd>
<dt>Name</dt><dd>{escape(display_name)}</dd>
<dt>Groups</dt><dd>{groups_html}</dd>
<dt>Policies</dt><dd id="policies">{policies_html}</dd>
</dl>
</section>
<section aria-labelledby="perm-heading">
<h2 id="perm-heading">Your permissions</h2>
{permissions}
</section>
<section aria-labelledby="out-heading">
<h2 id="out-heading" class="visually-hidden">Sign out</h2>
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


def cli_page(title: str, message: str, *, ok: bool | None = None, claims: dict[str, Any] | None = None) -> str:
    """The CLI's loopback page (`openfaas-iam auth`), styled like the sign-in page.

    Same stylesheet, inlined under a nonce, no script and nothing loaded from anywhere: the
    page is served by the command on 127.0.0.1 and should look like part of the same product.
    With `claims` (the verified id_token's), it names who signed in, so a person whose browser
    was signed in as someone else sees it before the token is used.
    """
    who = ""
    if claims is not None:
        name = str(claims.get("name") or claims.get("preferred_username") or claims.get("email") or "")
        named = f"<strong>{escape(name)}</strong> " if name else ""
        who = (
            f'<p class="lead">as {named}(subject <code id="subject">{escape(str(claims.get("sub", "")))}</code>)'
            f' at <code id="issuer">{escape(str(claims.get("iss", "")))}</code></p>'
        )
    kind = "" if ok is None else (' class="done"' if ok else ' class="error" role="alert"')
    body = f"""<section{kind}>
<h1>{escape(title)}</h1>
{who}
<p>{escape(message)}</p>
</section>"""
    html, _ = page(title, body)
    return html


def cli_headers(html: str) -> dict[str, str]:
    """The headers for a `cli_page`: the same strict CSP, with the nonce the page was rendered with."""
    marker = '<style nonce="'
    start = html.index(marker) + len(marker)
    return headers(html[start : html.index('"', start)])
