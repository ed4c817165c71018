"""Structural checks of ChittyIDs. Structure never makes an ID valid: only the authority does."""

from dataclasses import dataclass

from kernel.errors import ValidationFailed

ENTITY_TYPES = ("PEO", "PLACE", "PROP", "EVNT", "AUTH", "INFO", "FACT", "CONTEXT", "ACTOR")
# The canonical form's one-letter type, mapped onto the seed's type names.
CANONICAL_TYPE_LETTERS = {"P": "PEO", "L": "PLACE", "T": "PROP", "E": "EVNT", "A": "AUTH"}
MAX_LENGTH = 128
ALLOWED_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
SEED_SHAPE = "CHITTY-<TYPE>-<SEGMENT>-<SEGMENT>"
CANONICAL_SHAPE = "VV-G-LLL-SSSS-T-YM-C-X"
# The canonical form's segments: name, shortest and longest length, and what each may hold.
CANONICAL_SEGMENTS = (
    ("VV", 2, 2, "letters and digits"),
    ("G", 1, 1, "letters and digits"),
    ("LLL", 3, 3, "letters and digits"),
    ("SSSS", 4, 4, "letters and digits"),
    ("T", 1, 1, "letters"),
    ("YM", 2, 4, "digits"),
    ("C", 1, 1, "letters and digits"),
    ("X", 1, 1, "letters and digits"),
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
    """Check a ChittyID's structure and return its entity type, or raise `InvalidChittyID` saying what is wrong."""
    if not isinstance(value, str):
        raise InvalidChittyID(f"ChittyID must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidChittyID("ChittyID is required")
    if len(value) > MAX_LENGTH:
        raise InvalidChittyID(f"ChittyID is {len(value)} characters long; at most {MAX_LENGTH} are allowed")
    if any(character.isspace() for character in value):
        raise InvalidChittyID("ChittyID must not contain whitespace (check for spaces, tabs or line breaks)")
    if any("a" <= character <= "z" for character in value):
        raise InvalidChittyID("ChittyID must be upper case")
    unexpected = next((character for character in value if character not in ALLOWED_CHARACTERS), None)
    if unexpected is not None:
        raise InvalidChittyID(f"ChittyID may contain only A-Z, 0-9 and hyphens, not {unexpected!r}")
    segments = value.split("-")
    if segments[0] == "CHITTY":
        return _parse_seed_form(value, segments)
    return _parse_canonical_form(value, segments)


def _parse_seed_form(value: str, segments: list[str]) -> ParsedChittyID:
    if len(segments) < 4:
        raise InvalidChittyID(f"ChittyID is missing a segment: expected {SEED_SHAPE}")
    if len(segments) > 4:
        raise InvalidChittyID(f"ChittyID has {len(segments) - 4} segment(s) too many: expected {SEED_SHAPE}")
    if not all(segments):
        raise InvalidChittyID(f"ChittyID has an empty segment: expected {SEED_SHAPE}")
    entity_type = segments[1]
    if entity_type not in ENTITY_TYPES:
        raise InvalidChittyID(
            f"unknown ChittyID type {entity_type!r}; expected one of {', '.join(ENTITY_TYPES)}"
        )
    return ParsedChittyID(value, entity_type, "seed")


def _parse_canonical_form(value: str, segments: list[str]) -> ParsedChittyID:
    if len(segments) != len(CANONICAL_SEGMENTS):
        raise InvalidChittyID(
            f"ChittyID must be {SEED_SHAPE} or {CANONICAL_SHAPE}; it has {len(segments)} segment(s), "
            f"the canonical form has {len(CANONICAL_SEGMENTS)}"
        )
    for segment, (name, shortest, longest, allowed) in zip(segments, CANONICAL_SEGMENTS, strict=True):
        if not shortest <= len(segment) <= longest:
            size = str(shortest) if shortest == longest else f"{shortest} to {longest}"
            raise InvalidChittyID(
                f"ChittyID segment {name} of {CANONICAL_SHAPE} must be {size} characters, got {segment!r}"
            )
        if (allowed == "digits" and not segment.isdigit()) or (
            allowed == "letters" and not segment.isalpha()
        ):
            raise InvalidChittyID(
                f"ChittyID segment {name} of {CANONICAL_SHAPE} must be {allowed}, got {segment!r}"
            )
    letter = segments[4]
    if letter not in CANONICAL_TYPE_LETTERS:
        raise InvalidChittyID(
            f"unknown canonical ChittyID type letter {letter!r}; expected one of {', '.join(CANONICAL_TYPE_LETTERS)}"
        )
    return ParsedChittyID(value, CANONICAL_TYPE_LETTERS[letter], "canonical")
