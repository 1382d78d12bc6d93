"""Read-API tokens (PyJWT, HS256) and keyset cursors, without a server."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import cli
from worker.sidecar.auth import AuthError, Caller, mint_token, verify_token
from worker.sidecar.cursors import CursorError, Cursors

SECRET = "unit-test-secret-that-is-32-bytes-long"
NOW = datetime.now(UTC)
LATER = NOW + timedelta(hours=1)


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_a_minted_token_proves_its_caller() -> None:
    token = mint_token(SECRET, "stu-1", "student", timedelta(minutes=5))
    assert verify_token(token, SECRET) == Caller("stu-1", "student")


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
        pytest.param("not.a.token", id="garbage"),
        pytest.param("", id="empty"),
    ],
)  # fmt: skip
def test_a_bad_token_is_refused(token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(token, SECRET)


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
    assert verify_token(capsys.readouterr().out.strip(), SECRET) == Caller("stu-9", "student")


def test_the_token_command_needs_a_secret_or_development_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SIDECAR_JWT_SECRET", raising=False)
    monkeypatch.delenv("SIDECAR_DEV_MODE", raising=False)
    assert cli.main(["token", "--sub", "s", "--role", "admin"]) == cli.EXIT_CONFIG_ERROR
    assert capsys.readouterr().err.startswith("config error: SIDECAR_JWT_SECRET")
