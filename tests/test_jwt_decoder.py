"""The decoder's compiled base64url check must agree with PyJWT's own rule on every segment."""

import jwt
import pytest
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError

from keys.jwt_decoder import DECODER

SEGMENTS = [
    b"",
    b"e30",
    b"eyJhbGciOiJIUzI1NiJ9",
    b"QQ",
    b"QQ==",
    b"QQ=",
    b"QR",  # non-canonical: trailing bits set
    b"QUI",
    b"QUI=",
    b"QUJD",
    b"QUJD=",
    b"Q===",
    b"QQ===",
    b"A",
    b"AAAAA",
    b"!!!!",
    b"ab+/",
    b"ab cd",
    b"ab\ncd",
    b"ab.cd",
    "é".encode(),
    b"\x00\x01",
    b"-_-_",
    b"=QQ",
    b"Q=Q=",
]


def _outcome(decode, segment: bytes) -> bytes | str:
    try:
        return decode(segment, "header")
    except DecodeError as exc:
        return f"DecodeError: {exc}"


@pytest.mark.parametrize("segment", SEGMENTS, ids=repr)
def test_segment_rule_matches_pyjwt(segment):
    ours = _outcome(DECODER._jws._decode_base64url_segment, segment)
    assert ours == _outcome(PyJWS._decode_base64url_segment, segment)


def test_pyjwt_decodes_every_segment_through_the_overridable_method():
    """If PyJWT stopped calling this method through `self`, the override would silently do nothing."""
    seen = []

    class CountingJWS(type(DECODER._jws)):
        def _decode_base64url_segment(self, segment, name):
            seen.append(name)
            return super()._decode_base64url_segment(segment, name)

    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    assert CountingJWS().decode(token, "k" * 32, algorithms=["HS256"]) == b'{"sub":"x"}'
    assert seen == ["header", "payload", "crypto"]
    assert DECODER.decode(token, "k" * 32, algorithms=["HS256"]) == {"sub": "x"}


@pytest.mark.parametrize(
    "bad_secret",
    [b"", b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----", b"ssh-ed25519 AAAA"],
)
def test_hmac_secrets_are_still_checked_every_time_they_are_new(bad_secret):
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    for _ in range(2):  # a refused secret is not remembered as checked
        with pytest.raises(jwt.InvalidKeyError):
            DECODER.decode(token, bad_secret, algorithms=["HS256"])
