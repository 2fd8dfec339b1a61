"""Resource patterns: `*`, `ns:*`, `ns:fn`, `*:fn`, with `${jwt:claim}` variables.

Matching is anchored per part: a `*` never crosses the `:` between namespace and
function unless it is the whole pattern, so `dev*` cannot match `dev:fn`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openfaas_iam.model.claims import valid_key

VARIABLE = re.compile(r"\$\{([^}]*)\}")
_PART_CHARS = re.compile(r"[A-Za-z0-9._*?-]+")


@dataclass(frozen=True)
class ResourcePattern:
    text: str
    namespace: str  # "*" for the whole cluster
    function: str


def parse_resource(text: str) -> ResourcePattern:
    """Parse and validate a resource; ValueError says what was expected."""
    if not isinstance(text, str) or not text:
        raise ValueError("expected a resource such as '*', 'staging:*', 'dev:env' or '*:env'")
    if text == "*":
        return ResourcePattern(text, "*", "*")
    parts = text.split(":")
    # A variable's claim name may itself contain ':' (jwt:iss), so split outside ${...}.
    if "${" in text:
        parts = _split_outside_variables(text)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"malformed resource {text!r}: expected '*', 'namespace:*' or 'namespace:function'")
    for part in parts:
        for var in VARIABLE.findall(part):
            if not valid_key(var):
                raise ValueError(f"malformed variable ${{{var}}} in resource {text!r}: expected ${{jwt:<claim>}}")
        literal = VARIABLE.sub("x", part)
        if "${" in literal or not _PART_CHARS.fullmatch(literal):
            raise ValueError(
                f"malformed resource {text!r}: namespace and function may contain letters, digits, '-', '.', "
                "the wildcards '*' and '?', and ${jwt:<claim>} variables"
            )
    return ResourcePattern(text, parts[0], parts[1])


def _split_outside_variables(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("${", i):
            depth += 1
            cur.append("${")
            i += 2
            continue
        if ch == "}" and depth:
            depth -= 1
        if ch == ":" and not depth:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts
