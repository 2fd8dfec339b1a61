"""Forwarding an allowed call to the real OpenFaaS gateway with its admin credentials.

Only iam-authz holds those credentials (the `basic-auth` secret). The response is
streamed back unchanged, so `faas-cli logs --follow` works through the proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import requests

_PASS_REQUEST = ("Accept", "Accept-Encoding", "User-Agent")
_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "te", "trailer", "upgrade"}
)


class GatewayUnavailable(Exception):
    """The gateway did not answer: 502 with this reason."""


@dataclass
class Forwarded:
    status: int
    headers: dict[str, str]
    body: Iterator[bytes]
    _resp: requests.Response

    def read(self, limit: int) -> bytes:
        """The whole body, for responses the proxy rewrites (bounded)."""
        out = b""
        for chunk in self.body:
            out += chunk
            if len(out) > limit:
                self._resp.close()
                raise GatewayUnavailable(f"the gateway's response is larger than {limit} bytes")
        return out


class GatewayClient:
    def __init__(
        self,
        url: str,
        credentials: Callable[[], tuple[str, str] | None],
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        verify: str | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.timeout = (connect_timeout, read_timeout)
        self.verify = verify
        self.session = requests.Session()
        self.session.trust_env = False

    def forward(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> Forwarded:
        """Send exactly the canonical request the proxy decided on (path, query, body built by rest_api)."""
        creds = self.credentials()
        if creds is None:
            raise GatewayUnavailable("the gateway's admin credentials (secret basic-auth) are not mounted")
        out_headers = {k: headers[k] for k in _PASS_REQUEST if headers.get(k)}
        if body is not None:
            out_headers["Content-Type"] = "application/json"
        try:
            resp = self.session.request(
                method,
                self.url + path,
                params=list(query),
                data=body,
                headers=out_headers,
                auth=creds,
                timeout=self.timeout,
                stream=True,
                allow_redirects=False,
                verify=self.verify,
            )
        except requests.exceptions.Timeout:
            raise GatewayUnavailable(f"the OpenFaaS gateway at {self.url} did not answer in time") from None
        except requests.exceptions.RequestException as e:
            raise GatewayUnavailable(
                f"the OpenFaaS gateway at {self.url} is unreachable ({type(e).__name__})"
            ) from None
        headers_out = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP_RESPONSE}
        return Forwarded(resp.status_code, headers_out, _chunks(resp), resp)


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    try:
        yield from resp.iter_content(chunk_size=None)
    except requests.RequestException:
        return
    finally:
        resp.close()
