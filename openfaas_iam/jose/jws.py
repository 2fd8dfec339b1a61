"""Compact JWS (RFC 7515) signing and verification straight on `cryptography`.

Why not PyJWT here: its decode adds a pure-Python base64 alphabet check and a second
JSON pass that cost more than the signature itself for RS256 (see docs/performance.md).
This module does the same checks with C-speed primitives: strict base64url
(`binascii.a2b_base64(strict_mode=True)`), one JSON parse per segment, and the
signature verified over the exact signing input. Claim checks live in `verify.py`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from openfaas_iam.json_codec import dumps
from openfaas_iam.json_codec import loads as _loads

_TO_STD = bytes.maketrans(b"-_", b"+/")
_HEADERS: dict[str, Any] = {}  # parsed header segments: a handful of distinct values per issuer and kid
_SHA = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_PKCS1 = padding.PKCS1v15()
_PSS = {n: padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size) for n, h in _SHA.items()}
_ECDSA = {n: ec.ECDSA(h) for n, h in _SHA.items()}
_EC_SIZE = {"256": 32, "384": 48, "512": 66}


class JwsError(Exception):
    """Malformed token or bad signature; the message is safe to show."""


def b64url_decode(segment: str) -> bytes:
    try:
        raw = segment.encode("ascii")
    except UnicodeEncodeError:
        raise JwsError("invalid base64url") from None
    if b"=" in raw or b"+" in raw or b"/" in raw:
        raise JwsError("invalid base64url")
    try:
        return binascii.a2b_base64(raw.translate(_TO_STD) + b"=" * (-len(raw) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise JwsError("invalid base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_json(segment: str) -> Any:
    try:
        return _loads(b64url_decode(segment))
    except (JwsError, ValueError, UnicodeDecodeError):
        raise JwsError("not base64url-encoded JSON") from None


def decode_header(segment: str) -> Any:
    """Like decode_json, remembering the few distinct headers seen (treat the result as read-only)."""
    value = _HEADERS.get(segment)
    if value is None:
        value = decode_json(segment)
        if isinstance(value, dict) and len(segment) <= 512:
            if len(_HEADERS) >= 1024:
                _HEADERS.clear()
            _HEADERS[segment] = value
    return value


def _rsa(pad_of: Any, bits: str) -> Callable[[Any, bytes, bytes], None]:
    pad, sha = pad_of(bits), _SHA[bits]
    return lambda key, sig, msg: key.verify(sig, msg, pad, sha)


def _ecdsa(bits: str) -> Callable[[Any, bytes, bytes], None]:
    size, algo = _EC_SIZE[bits], _ECDSA[bits]

    def verify(key: Any, sig: bytes, msg: bytes) -> None:
        if len(sig) != 2 * size:
            raise InvalidSignature
        key.verify(
            encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")), msg, algo
        )

    return verify


# One verifier per algorithm, bound once: no per-call isinstance checks on the hot path. The
# caller has already matched the algorithm to the key (one algorithm per key, RFC 8725 §3.1);
# a key of the wrong type still fails closed below (TypeError/AttributeError -> invalid).
_VERIFY: dict[str, Callable[[Any, bytes, bytes], None]] = {
    **{f"RS{b}": _rsa(lambda _b: _PKCS1, b) for b in _SHA},
    **{f"PS{b}": _rsa(lambda b_: _PSS[b_], b) for b in _SHA},
    **{f"ES{b}": _ecdsa(b) for b in _SHA},
    "EdDSA": lambda key, sig, msg: key.verify(sig, msg),
}
_KEY_TYPES: dict[str, type | tuple[type, ...]] = {
    "RS": rsa.RSAPublicKey,
    "PS": rsa.RSAPublicKey,
    "ES": ec.EllipticCurvePublicKey,
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}


def key_fits(alg: str, key: Any) -> bool:
    """Whether a key can verify `alg` at all (checked once, when keys are parsed)."""
    types = _KEY_TYPES.get(alg[:2])
    return types is not None and isinstance(key, types)


def verify_signature(alg: str, key: Any, signing_input: bytes, signature_b64: str) -> None:
    """Raise JwsError unless `signature` is `alg`'s signature of `signing_input` under `key`."""
    verify = _VERIFY.get(alg)
    if verify is None:
        raise JwsError(f"algorithm {alg} is not supported")
    try:
        verify(key, b64url_decode(signature_b64), signing_input)
    except (InvalidSignature, JwsError, ValueError, TypeError, AttributeError):
        raise JwsError("the signature is invalid") from None


def sign_es256(header: dict[str, Any], claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    signing_input = b64url_encode(dumps(header)) + "." + b64url_encode(dumps(claims))
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), _ECDSA["256"]))
    return signing_input + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
