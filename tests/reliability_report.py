"""docs/reliability.md keeps the latest `make fuzz` and `make soak` figures, each in its own section."""

from __future__ import annotations

import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
HEADER = """# Reliability

What the bundle does under hostile input, faults and sustained load, with the latest figures.
Sections between the markers are rewritten by `make fuzz` and `make soak`.

## What is tested in `make test`

- **Property-based tests** (hypothesis, `tests/fuzz/`): token parsing, IAM documents, the
  REST-to-permission mapping and the token request parser raise only their own typed errors;
  the policy engine is checked against a plain reference reading of random policies (never an
  allow the policies do not grant); every endpoint of every function gets random requests
  through the local gateway and never answers 5xx.
- **The adversarial corpus** (`tests/corpus/`, 91 cases kept as data): RFC 8725 attacks (alg
  none, HMAC keyed with the public key, `jku`/`x5u`/embedded `jwk`, kid tricks), expired and
  not-yet-valid tokens, oversize and deeply nested input, invalid UTF-8, header injection,
  path tricks on the proxy (`..`, encoded slashes, double slashes), namespace smuggling between
  query and body, and hostile IAM documents (billion laughs, nesting, size, tags).
- **Faults** (`tests/e2e/test_faults.py` and others): Redis killed and restarted under load
  (no request fails; Redis is used again by itself); the IdP slow (every request fails within
  the fetch timeout with a clear reason, the function keeps answering, the next exchange after
  recovery works) and down (cached keys keep verifying up to the maximum staleness, then a
  clear failure); Kubernetes API errors and timeouts during rotation (keyset unchanged or one
  whole step, next run succeeds); the gateway down behind the proxy (502 with the reason); an
  audit webhook that fails (retried with backoff, nothing blocks).
- **Log hygiene**: after the suite, every line every function logged is scanned: no token,
  no private key, no client secret or password.

## Limits the figures show

- One function process (8 waitress threads) answers a few thousand decisions per second on
  this 2-core machine; scale out with replicas (they share keys through Redis).
- An IdP that does not answer costs each exchange at most `fetch_timeout` (default 5 s) once
  per `jwks_refetch_interval`; in between, requests fail fast with the last reason.
"""


def update_section(name: str, body: str) -> None:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = f"{begin}\n## Latest `make {name}` ({stamp})\n\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)
