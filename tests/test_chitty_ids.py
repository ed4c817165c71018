"""ChittyID structure: both forms are accepted, and every malformation is named in the error."""

import pytest

from identities.chitty_ids import ENTITY_TYPES, MAX_LENGTH, InvalidChittyID, parse_chitty_id
from kernel.errors import ValidationFailed


@pytest.mark.parametrize("entity_type", ENTITY_TYPES)
def test_seed_form_is_accepted_for_every_type(entity_type):
    parsed = parse_chitty_id(f"CHITTY-{entity_type}-USER123-ABC")

    assert (parsed.chitty_id, parsed.entity_type, parsed.form) == (
        f"CHITTY-{entity_type}-USER123-ABC",
        entity_type,
        "seed",
    )


@pytest.mark.parametrize(
    ("chitty_id", "entity_type"),
    [
        ("01-1-USA-1234-P-2501-3-7", "PEO"),
        ("AB-C-LON-00Z9-L-25-0-X", "PLACE"),
        ("01-1-USA-1234-T-2025-3-7", "PROP"),
        ("99-Z-999-ZZZZ-E-250-Z-9", "EVNT"),
        ("01-1-USA-1234-A-2501-3-7", "AUTH"),
    ],
)
def test_canonical_form_is_accepted_and_its_type_letter_mapped(chitty_id, entity_type):
    parsed = parse_chitty_id(chitty_id)

    assert (parsed.entity_type, parsed.form) == (entity_type, "canonical")


def test_an_id_of_exactly_the_maximum_length_is_accepted():
    chitty_id = "CHITTY-PEO-" + "A" * (MAX_LENGTH - len("CHITTY-PEO-") - 2) + "-B"
    assert len(chitty_id) == MAX_LENGTH

    assert parse_chitty_id(chitty_id).entity_type == "PEO"


def rejection(value: object) -> InvalidChittyID:
    with pytest.raises(InvalidChittyID) as raised:
        parse_chitty_id(value)
    return raised.value


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (None, "must be a string, not NoneType"),
        (12345, "must be a string, not int"),
        (b"CHITTY-PEO-USER123-ABC", "must be a string, not bytes"),
        (["CHITTY-PEO-USER123-ABC"], "must be a string, not list"),
        ("", "ChittyID is required"),
        ("CHITTY-PEO-" + "A" * 200 + "-B", f"213 characters long; at most {MAX_LENGTH}"),
        (" CHITTY-PEO-USER123-ABC", "must not contain whitespace"),
        ("CHITTY-PEO-USER123-ABC\n", "must not contain whitespace"),
        ("CHITTY-PEO-USER 123-ABC", "must not contain whitespace"),
        ("CHITTY-PEO-USER123-ABC\t", "must not contain whitespace"),
        ("chitty-peo-user123-abc", "must be upper case"),
        ("CHITTY-PEO-user123-ABC", "must be upper case"),
        ("CHITTY-PEO-USER_123-ABC", "may contain only A-Z, 0-9 and hyphens, not '_'"),
        ("CHITTY-PEO-ÜSER123-ABC", "may contain only A-Z, 0-9 and hyphens, not 'Ü'"),
        ("CHITTY-PEO-USER123-ABC\x00", "may contain only A-Z, 0-9 and hyphens, not '\\x00'"),
        ("CHITTY-PEO-USER123", "missing a segment: expected CHITTY-<TYPE>-<SEGMENT>-<SEGMENT>"),
        ("CHITTY-PEO", "missing a segment"),
        ("CHITTY", "missing a segment"),
        ("CHITTY-PEO-USER123-ABC-EXTRA", "1 segment(s) too many"),
        ("CHITTY-PEO--ABC", "empty segment"),
        ("CHITTY-PEO-USER123-", "empty segment"),
        ("CHITTY-PERSON-USER123-ABC", "unknown ChittyID type 'PERSON'; expected one of PEO, PLACE"),
        ("USER123", "must be CHITTY-<TYPE>-<SEGMENT>-<SEGMENT> or VV-G-LLL-SSSS-T-YM-C-X"),
        ("01-1-USA-1234-P-2501-3", "it has 7 segment(s), the canonical form has 8"),
        ("01-1-USA-1234-P-2501-3-7-9", "it has 9 segment(s)"),
        ("001-1-USA-1234-P-2501-3-7", "segment VV of VV-G-LLL-SSSS-T-YM-C-X must be 2 characters, got '001'"),
        ("01-1-US-1234-P-2501-3-7", "segment LLL of VV-G-LLL-SSSS-T-YM-C-X must be 3 characters, got 'US'"),
        ("01-1-USA-123-P-2501-3-7", "segment SSSS of VV-G-LLL-SSSS-T-YM-C-X must be 4 characters"),
        ("01-1-USA-1234-P-2-3-7", "segment YM of VV-G-LLL-SSSS-T-YM-C-X must be 2 to 4 characters, got '2'"),
        ("01-1-USA-1234-P-25A1-3-7", "segment YM of VV-G-LLL-SSSS-T-YM-C-X must be digits, got '25A1'"),
        ("01-1-USA-1234-7-2501-3-7", "segment T of VV-G-LLL-SSSS-T-YM-C-X must be letters, got '7'"),
        (
            "01-1-USA-1234-Q-2501-3-7",
            "unknown canonical ChittyID type letter 'Q'; expected one of P, L, T, E, A",
        ),
        ("01--USA-1234-P-2501-3-7", "segment G of VV-G-LLL-SSSS-T-YM-C-X must be 1 characters, got ''"),
    ],
)
def test_each_malformation_is_named(value, named):
    error = rejection(value)

    assert named in error.message
    assert error.code == "INVALID_CHITTY_ID"
    assert isinstance(error, ValidationFailed)
    assert error.http_status == 400
