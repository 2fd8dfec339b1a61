"""Browser sessions in a cookie that holds no token in clear.

The cookie is AES-256-GCM sealed (confidential and tamper-evident: "signed" and more),
carries its own expiry, and is bound to a purpose so a sign-in flow cookie can never be
replayed as a session. The key is derived with HKDF from a mounted secret.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from openfaas_iam import json_codec


def derive_key(secret: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"openfaas-iam session", info=purpose.encode()).derive(
        secret
    )


class SealedCookie:
    def __init__(self, secret: bytes, purpose: str) -> None:
        self._aead = AESGCM(derive_key(secret, purpose))
        self._aad = purpose.encode()

    def seal(self, data: dict[str, Any], ttl: float, now: float | None = None) -> str:
        now = time.time() if now is None else now
        nonce = os.urandom(12)
        payload = json_codec.dumps({"exp": int(now + ttl), "d": data})
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, payload, self._aad)).rstrip(b"=").decode()

    def open(self, value: str | None, now: float | None = None) -> dict[str, Any] | None:
        """The data, or None when the cookie is missing, forged, from another purpose or expired."""
        if not value or len(value) > 8192:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            doc = json_codec.loads(self._aead.decrypt(raw[:12], raw[12:], self._aad))
        except Exception:  # any failure means "no valid session"
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("d"), dict):
            return None
        if (time.time() if now is None else now) > doc.get("exp", 0):
            return None
        return doc["d"]
