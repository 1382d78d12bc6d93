"""Read-API tokens (PyJWT, HS256) and keyset cursors, without a server."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import cli
from worker.sidecar.auth import AuthError, Caller, TokenRules, mint_token, verify_token
from worker.sidecar.cursors import CursorError, Cursors

SECRET = "unit-test-secret-that-is-32-bytes-long"
OLD_SECRET = "the-secret-before-the-rotation-32-bytes"
RULES = TokenRules((SECRET,))
NOW = datetime.now(UTC)
LATER = NOW + timedelta(hours=1)


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_a_minted_token_proves_its_caller() -> None:
    token = mint_token(SECRET, "stu-1", "student", timedelta(minutes=5))
    assert verify_token(token, RULES) == Caller("stu-1", "student")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(signed({"sub": "s", "role": "admin", "exp": NOW - timedelta(1)}), id="old"),
        pytest.param(signed({"sub": "s", "role": "admin"}), id="no-exp"),
        pytest.param(signed({"role": "admin", "exp": LATER}), id="no-sub"),
        pytest.param(signed({"sub": "s", "exp": LATER}), id="no-role"),
        pytest.param(signed({"sub": "s", "role": "root", "exp": LATER}), id="bad-role"),
        pytest.param(signed({"sub": "", "role": "admin", "exp": LATER}), id="empty-sub"),
        pytest.param(signed({"sub": "s", "role": "admin", "exp": LATER},
                            secret="another-secret-that-is-32-bytes-long"), id="wrong-secret"),
        pytest.param(signed({"sub": "s", "role": "admin", "exp": LATER},
                            secret=SECRET * 2, algorithm="HS512"), id="other-algorithm"),
        pytest.param(jwt.encode({"sub": "s", "role": "admin", "exp": LATER},
                                None, algorithm="none"), id="alg-none"),
        pytest.param(signed({"sub": "s", "role": "admin", "exp": LATER}), id="no-iat"),
        pytest.param(signed({"sub": "s", "role": "admin", "iat": NOW - timedelta(minutes=5),
                             "exp": NOW - timedelta(seconds=1)}), id="expired-just-now"),
        pytest.param(signed({"sub": "s", "role": "admin", "iat": NOW,
                             "exp": NOW + timedelta(minutes=61)}), id="lives-too-long"),
        pytest.param(signed({"sub": "s", "role": "admin", "iat": NOW + timedelta(hours=1),
                             "exp": NOW + timedelta(hours=1, minutes=5)}), id="issued-later"),
        pytest.param("not.a.token", id="garbage"),
        pytest.param("", id="empty"),
    ],
)  # fmt: skip
def test_a_bad_token_is_refused(token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(token, RULES)


@pytest.mark.parametrize(
    ("caller", "student", "allowed"),
    [
        (Caller("stu-1", "student"), "stu-1", True),
        (Caller("stu-1", "student"), "stu-2", False),
        (Caller("ops", "admin"), "stu-2", True),
        (Caller("billing", "service"), "stu-2", True),
    ],
)
def test_students_read_only_their_own_data(caller: Caller, student: str, allowed: bool) -> None:
    assert caller.may_read(student) is allowed


CURSORS = Cursors(b"k" * 32)


def test_a_cursor_round_trips_within_its_list() -> None:
    assert (
        CURSORS.decode(CURSORS.encode("transactions\x1fstu-1", 42), "transactions\x1fstu-1") == 42
    )


def test_a_cursor_from_another_list_or_server_is_refused() -> None:
    cursor = CURSORS.encode("transactions\x1fstu-1", 42)
    with pytest.raises(CursorError, match="another list"):
        CURSORS.decode(cursor, "transactions\x1fstu-2")
    with pytest.raises(CursorError, match="not issued"):
        Cursors(b"x" * 32).decode(cursor, "transactions\x1fstu-1")


def test_an_edited_cursor_is_refused() -> None:
    cursor = CURSORS.encode("s", 42)
    payload, mac = cursor.split(".")
    other_payload = CURSORS.encode("s", 41).split(".")[0]
    for edited in (f"{other_payload}.{mac}", f"{payload}.{mac[:-2]}AA", payload, f"{payload}."):
        with pytest.raises(CursorError):
            CURSORS.decode(edited, "s")


@given(st.text(max_size=600))
def test_any_string_is_a_cursor_or_a_cursor_error(text: str) -> None:
    with contextlib.suppress(CursorError):
        CURSORS.decode(text, "s")


def test_the_token_command_mints_a_token_for_the_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIDECAR_JWT_SECRET", SECRET)
    assert cli.main(["token", "--sub", "stu-9", "--role", "student", "--minutes", "5"]) == 0
    assert verify_token(capsys.readouterr().out.strip(), RULES) == Caller("stu-9", "student")


def test_the_token_command_needs_a_secret_or_development_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SIDECAR_JWT_SECRET", raising=False)
    monkeypatch.delenv("SIDECAR_DEV_MODE", raising=False)
    assert cli.main(["token", "--sub", "s", "--role", "admin"]) == cli.EXIT_CONFIG_ERROR
    assert capsys.readouterr().err.startswith("config error: SIDECAR_JWT_SECRET")


def test_during_a_rotation_the_previous_secret_verifies_but_never_signs() -> None:
    rotating = TokenRules((SECRET, OLD_SECRET))
    old = mint_token(OLD_SECRET, "stu-1", "student", timedelta(minutes=5))
    assert verify_token(old, rotating) == Caller("stu-1", "student")
    with pytest.raises(AuthError):
        verify_token(old, RULES)  # once the rotation is over
    with pytest.raises(AuthError):
        verify_token(mint_token("a-third-secret-of-at-least-32-bytes", "s", "admin",
                                timedelta(minutes=5)), rotating)  # fmt: skip


def test_issuer_and_audience_are_required_when_set() -> None:
    rules = TokenRules((SECRET,), issuer="https://auth.example", audience="payment-worker")
    good = mint_token(SECRET, "s", "admin", timedelta(minutes=5),
                      issuer="https://auth.example", audience="payment-worker")  # fmt: skip
    assert verify_token(good, rules) == Caller("s", "admin")
    for issuer, audience in [(None, "payment-worker"), ("https://auth.example", None),
                             ("https://evil.example", "payment-worker"),
                             ("https://auth.example", "another-service")]:  # fmt: skip
        bad = mint_token(SECRET, "s", "admin", timedelta(minutes=5),
                         issuer=issuer, audience=audience)  # fmt: skip
        with pytest.raises(AuthError):
            verify_token(bad, rules)


def test_the_maximum_lifetime_is_a_setting() -> None:
    long_lived = mint_token(SECRET, "s", "service", timedelta(hours=8))
    with pytest.raises(AuthError, match="within"):
        verify_token(long_lived, RULES)
    assert verify_token(long_lived, TokenRules((SECRET,), max_lifetime=timedelta(hours=8)))


def test_cursors_of_the_previous_key_stay_valid_during_a_rotation() -> None:
    before = Cursors(b"o" * 32).encode("s", 7)
    assert Cursors(b"n" * 32, b"o" * 32).decode(before, "s") == 7
    with pytest.raises(CursorError, match="not issued"):
        Cursors(b"n" * 32).decode(before, "s")
    after = Cursors(b"n" * 32, b"o" * 32).encode("s", 8)
    assert Cursors(b"n" * 32).decode(after, "s") == 8  # issued under the new key


def test_the_token_command_refuses_a_lifetime_the_sidecar_would_refuse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIDECAR_JWT_SECRET", SECRET)
    monkeypatch.setenv("SIDECAR_JWT_MAX_LIFETIME_MINUTES", "30")
    assert cli.main(["token", "--sub", "s", "--role", "admin", "--minutes", "45"]) == 2
    assert "SIDECAR_JWT_MAX_LIFETIME_MINUTES=30" in capsys.readouterr().err
    monkeypatch.setenv("SIDECAR_JWT_ISSUER", "https://auth.example")
    monkeypatch.setenv("SIDECAR_JWT_AUDIENCE", "payment-worker")
    assert cli.main(["token", "--sub", "s", "--role", "admin", "--minutes", "30"]) == 0
    rules = TokenRules((SECRET,), issuer="https://auth.example", audience="payment-worker")
    assert verify_token(capsys.readouterr().out.strip(), rules) == Caller("s", "admin")


def raw_token(payload: str, secret: str = SECRET) -> str:
    """A token whose claims are this exact JSON text (PyJWT would not write NaN or a string
    `exp`), validly signed."""

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(payload.encode())
    mac = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(mac)).decode()


@pytest.mark.parametrize(
    "claims",
    [
        '"iat": {now}, "exp": "{later}"',
        '"iat": -Infinity, "exp": {later}',
        '"iat": NaN, "exp": {later}',
        '"iat": {now}, "exp": 1e300',
        '"iat": {later}, "exp": {now}',
        '"iat": {now}, "exp": {later}, "aud": "another-service"',
    ],
)
def test_odd_claims_in_a_validly_signed_token_are_a_refusal_not_an_error(claims: str) -> None:
    now = int(datetime.now(UTC).timestamp())
    text = claims.replace("{now}", str(now)).replace("{later}", str(now + 20))
    with pytest.raises(AuthError):
        verify_token(raw_token('{"sub": "s", "role": "admin", ' + text + "}"), RULES)
