"""Structural checks of ChittyIDs. Structure never makes an ID valid: only the authority does."""

import re
from dataclasses import dataclass

from chittyauth_site.errors import ValidationFailed

ENTITY_TYPES = ("PEO", "PLACE", "PROP", "EVNT", "AUTH", "INFO", "FACT", "CONTEXT", "ACTOR")
# The canonical form's one-letter type, mapped onto the seed's type names.
CANONICAL_TYPE_LETTERS = {"P": "PEO", "L": "PLACE", "T": "PROP", "E": "EVNT", "A": "AUTH"}
MAX_LENGTH = 128

SEED_FORM = re.compile(r"CHITTY-(?P<type>[A-Z]+)-(?P<seg1>[A-Z0-9]+)-(?P<seg2>[A-Z0-9]+)")
CANONICAL_FORM = re.compile(
    r"(?P<vv>[0-9A-Z]{2})-(?P<g>[0-9A-Z])-(?P<lll>[0-9A-Z]{3})-(?P<ssss>[0-9A-Z]{4})"
    r"-(?P<t>[A-Z])-(?P<ym>[0-9]{2,4})-(?P<c>[0-9A-Z])-(?P<x>[0-9A-Z])"
)


class InvalidChittyID(ValidationFailed):
    """A ChittyID that is not shaped like one; the message says what is wrong."""

    code = "INVALID_CHITTY_ID"


@dataclass(frozen=True)
class ParsedChittyID:
    chitty_id: str
    entity_type: str
    form: str


def parse_chitty_id(value: object) -> ParsedChittyID:
    """Check a ChittyID's structure and return its entity type, or raise `InvalidChittyID`."""
    if not isinstance(value, str) or not value:
        raise InvalidChittyID("ChittyID is required and must be a string")
    if len(value) > MAX_LENGTH:
        raise InvalidChittyID(f"ChittyID is longer than {MAX_LENGTH} characters")
    if value != value.strip():
        raise InvalidChittyID("ChittyID must not have leading or trailing whitespace")
    if value != value.upper():
        raise InvalidChittyID("ChittyID must be upper case")
    if value.startswith("CHITTY-"):
        match = SEED_FORM.fullmatch(value)
        if not match:
            raise InvalidChittyID(
                "ChittyID must look like CHITTY-<TYPE>-<SEGMENT>-<SEGMENT> with letters and digits in each segment"
            )
        entity_type = match["type"]
        if entity_type not in ENTITY_TYPES:
            raise InvalidChittyID(
                f"unknown ChittyID type {entity_type!r}; expected one of {', '.join(ENTITY_TYPES)}"
            )
        return ParsedChittyID(value, entity_type, "seed")
    match = CANONICAL_FORM.fullmatch(value)
    if not match:
        raise InvalidChittyID(
            "ChittyID must be CHITTY-<TYPE>-<SEGMENT>-<SEGMENT> or the canonical VV-G-LLL-SSSS-T-YM-C-X form"
        )
    letter = match["t"]
    if letter not in CANONICAL_TYPE_LETTERS:
        raise InvalidChittyID(
            f"unknown canonical ChittyID type letter {letter!r}; expected one of {', '.join(CANONICAL_TYPE_LETTERS)}"
        )
    return ParsedChittyID(value, CANONICAL_TYPE_LETTERS[letter], "canonical")
