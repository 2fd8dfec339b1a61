"""The local provider reads bodies as faas-netes's encoding/json does, no more kindly (real-peers.md).

It is also the tests' oracle for what a real provider would act on, so a body Go refuses must
be refused here, not read into a target.
"""

from __future__ import annotations

import base64
import io
import json

import pytest

from localgw.go_decode import faas_netes_target, unmarshal
from localgw.provider import Provider

ADMIN = ("admin", "pw")


def call(provider: Provider, method: str, path: str, raw: bytes) -> int:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"admin:pw").decode(),
    }
    status: list[str] = []
    b"".join(provider(environ, lambda s, h: status.append(s)))
    return int(status[0].split()[0])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"service": "a", "image": "x", "namespace": 5}',
        b'{"service": "a", "image": "x", "envVars": {"a": 1}}',
        b'{"service": "a", "image": "x", "labels": {"com.openfaas.scale.min": 5}}',
        b'{"service": "a", "image": "x", "labels": "notamap"}',
        b'{"service": "a", "image": "x", "secrets": "basic-auth"}',
        b'{"service": "a", "image": "x", "readOnlyRootFilesystem": "yes"}',
        b'{"service": "a", "image": NaN}',
        '{"service": "a", "image": "x"}'.encode("utf-16"),
    ],
    ids=["int-namespace", "int-env", "int-label", "string-labels", "string-secrets", "string-bool", "nan", "utf-16"],
)
def test_a_body_go_refuses_is_a_400_and_no_target(raw: bytes) -> None:
    provider = Provider(lambda: ADMIN)
    assert call(provider, "POST", "/system/functions", raw) == 400
    assert not provider.functions
    with pytest.raises(ValueError):
        faas_netes_target("POST", "/system/functions", {}, raw)


def test_null_is_a_zero_value_and_well_typed_bodies_still_deploy() -> None:
    provider = Provider(lambda: ADMIN)
    body = {"service": "team-a-x", "image": "x", "namespace": None, "labels": {"a": "b"}, "secrets": ["s"]}
    assert call(provider, "POST", "/system/functions", json.dumps(body).encode()) == 202
    assert ("openfaas-fn", "team-a-x") in provider.functions
    assert unmarshal(b'{"replicas": 2}', ("replicas",)) == {"replicas": 2}
    with pytest.raises(ValueError):
        unmarshal(b'{"replicas": -1}', ("replicas",))


@pytest.mark.parametrize("name", ["Bad_Name", "UPPER", "-lead", "trail-", "a.b"])
def test_a_name_faas_netes_would_refuse_is_a_400(name: str) -> None:
    provider = Provider(lambda: ADMIN)
    raw = json.dumps({"service": name, "image": "x"}).encode()
    assert call(provider, "POST", "/system/functions", raw) == 400
    assert not provider.functions
