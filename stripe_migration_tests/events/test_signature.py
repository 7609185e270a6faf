"""Stripe-Signature verification: the scheme, rotation, tolerance and malformed headers."""

from __future__ import annotations

import pytest
import stripe

from stripe_migration.webhook.signature import (
    SignatureError,
    SignatureVerifier,
    compute_signature,
    parse_header,
    parse_secrets,
    sign,
    verify,
)

BODY = b'{"id":"evt_1","object":"event","type":"product.updated","created":1700000000}'
NOW = 1_700_000_000
SECRET = "whsec_current"
OLD = "whsec_previous"


def test_signature_matches_stripe_python() -> None:
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=NOW)
    assert header == sign(BODY, SECRET, timestamp=NOW)
    assert verify(BODY, header, [SECRET], now=NOW) == NOW
    assert stripe.WebhookSignature.verify_header(
        BODY, sign(BODY, SECRET, NOW), SECRET, tolerance=None
    )


@pytest.mark.parametrize("secret", [SECRET, OLD])
def test_rotation_accepts_every_configured_secret(secret: str) -> None:
    verifier = SignatureVerifier(f"{SECRET}, {OLD}")
    assert verifier.verify(BODY, sign(BODY, secret, NOW), now=NOW) == NOW


def test_any_of_several_v1_signatures_may_match() -> None:
    header = f"t={NOW},v1={'0' * 64},v0=ignored,v1={compute_signature(SECRET, NOW, BODY)}"
    assert verify(BODY, header, [SECRET], now=NOW) == NOW


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (BODY, sign(BODY, "whsec_other", NOW), "no signature"),
        (BODY + b" ", sign(BODY, SECRET, NOW), "no signature"),
        (BODY, f"t={NOW + 1},v1={compute_signature(SECRET, NOW, BODY)}", "no signature"),
        (BODY, None, "missing"),
        (BODY, "", "missing"),
        (BODY, f"v1={compute_signature(SECRET, NOW, BODY)}", "no timestamp"),
        (BODY, f"t=abc,v1={compute_signature(SECRET, NOW, BODY)}", "non-numeric"),
        (BODY, f"t={NOW},v0={compute_signature(SECRET, NOW, BODY)}", "no v1"),
        (BODY, "garbage", "no timestamp"),
    ],
)
def test_refused(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message) as caught:
        verify(body, header, [SECRET], now=NOW)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (-301, False), (300, True), (301, False)])
def test_tolerance_both_ways(offset: int, ok: bool) -> None:
    header = sign(BODY, SECRET, NOW + offset)
    if ok:
        assert verify(BODY, header, [SECRET], tolerance_s=300, now=NOW) == NOW + offset
    else:
        with pytest.raises(SignatureError, match="tolerance"):
            verify(BODY, header, [SECRET], tolerance_s=300, now=NOW)


def test_secrets_parsing_and_repr_hides_them() -> None:
    assert parse_secrets(" a , ,b,") == ("a", "b")
    with pytest.raises(ValueError, match="STRIPE_WEBHOOK_SECRET"):
        parse_secrets(" , ")
    verifier = SignatureVerifier([SECRET, OLD])
    assert verifier.secret_count == 2
    assert SECRET not in repr(verifier) and OLD not in repr(verifier)


def test_parse_header() -> None:
    assert parse_header(f"t={NOW},v1=aa,v1=bb") == (NOW, ["aa", "bb"])
    with pytest.raises(SignatureError, match="too long"):
        parse_header("t=1," + "v1=a," * 5000)
