from __future__ import annotations

import base64

import pytest

from openfaas_iam.proxy.basic_auth import is_admin, parse_basic


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("admin:pw"), True),
        (basic("admin:pw2"), False),
        (basic("root:pw"), False),
        (basic("admin"), False),
        ("Basic !!!", False),
        ("Bearer x", False),
        ("", False),
        (None, False),
        ("basic " + base64.b64encode(b"admin:pw").decode(), True),
    ],
)
def test_is_admin(header: str | None, ok: bool) -> None:
    assert is_admin(header, ("admin", "pw")) is ok


def test_no_credentials_mounted_means_no_admin() -> None:
    assert not is_admin(basic("admin:pw"), None)
    assert parse_basic(base64.b64encode(b"a:b:c").decode()) == ("a", "b:c")
