"""PyJWT's decoder with two per-token costs taken out of a fresh token's verification (about half of it):

- PyJWT 2.15 rejects non-alphabet characters in each segment (GHSA-hxm8-2xgr-2p9m) by testing every
  character in a Python generator. The rule here is the same one, checked by one compiled regular expression.
  `tests/test_jwt_decoder.py` holds it against PyJWT's for valid and malformed segments, so an upgrade that
  changes PyJWT's rule fails there.
- PyJWT checks an HMAC secret (not empty, not a PEM, SSH or DER asymmetric key) on every decode, parsing it
  as DER to be sure. Ours is one configured secret, so it is checked once and the checked bytes kept.

Every other step (signature, algorithm allow-list, claims) is PyJWT's own.
"""

import binascii
import re

from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.api_jwt import PyJWT
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
_MAX_CHECKED_SECRETS = 8


class _CheckedOnceHMAC(HMACAlgorithm):
    def __init__(self, hash_alg: object) -> None:
        super().__init__(hash_alg)
        self._checked: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        checked = self._checked.get(key)
        if checked is None:
            checked = super().prepare_key(key)
            if len(self._checked) < _MAX_CHECKED_SECRETS:
                self._checked[key] = checked
        return checked


class _CompiledSegmentCheckJWS(PyJWS):
    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if padding > 2 or (padding and len(segment) % 4 != 0):
            raise DecodeError(f"Invalid {name} padding")
        if len(stripped) % 4 == 1 or _BASE64URL.fullmatch(stripped) is None:
            raise DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise DecodeError(f"Invalid {name} padding") from err
        if base64url_encode(decoded) != stripped:
            raise DecodeError(f"Invalid {name} padding")
        return decoded


def _decoder() -> PyJWT:
    decoder = PyJWT()
    decoder._jws = _CompiledSegmentCheckJWS(options=decoder._get_sig_options())
    decoder._jws.unregister_algorithm("HS256")
    decoder._jws.register_algorithm("HS256", _CheckedOnceHMAC(HMACAlgorithm.SHA256))
    return decoder


DECODER = _decoder()
