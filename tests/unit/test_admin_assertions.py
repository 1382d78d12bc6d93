"""Admin assertions (CONTRACT section 8): ES256 or EdDSA JWS binding one privileged request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from worker.core.assertions import AdminAssertions, KeyFileError, load_keys
from worker.core.catalog import UpsertItem
from worker.core.coins import CoinCommand, Wallet, decide_coins
from worker.core.commands import command_for
from worker.core.handlers import Policies, Rewards
from worker.core.payments import RefundPayment
from worker.core.signatures import WebhookVerifier
from worker.settings import ConfigError, load_settings

AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # when the request reached the broker
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
BOUND = {"adjustment_id": "adj-1", "student_id": "stu-1", "amount": -250}


def pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.ECAlgorithm
        if isinstance(private, ec.EllipticCurvePrivateKey)
        else (jwt.algorithms.OKPAlgorithm)
    )
    document: dict[str, Any] = json.loads(algorithm.to_jwk(private.public_key()))
    return {**document, "kid": kid}


def sign(private: Any = EC_KEY, *, kid: str | None = None, **claims: Any) -> str:
    algorithm = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "EdDSA"
    body = {"sub": "staff-1", "exp": int((AT + timedelta(minutes=5)).timestamp()), **BOUND}
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, private, algorithm=algorithm, headers={"kid": kid} if kid else None)


CHECKER = AdminAssertions(load_keys(pem(EC_KEY) + pem(ED_KEY), "keys.pem"))


def refusal(assertion: str | None, at: datetime = AT, checker: AdminAssertions = CHECKER) -> Any:
    return checker.refusal(assertion, "staff-1", BOUND, at)


def test_an_assertion_by_either_kind_of_key_binding_the_request_holds() -> None:
    assert refusal(sign(EC_KEY)) is None
    assert refusal(sign(ED_KEY)) is None


@pytest.mark.parametrize(
    ("claims", "named"),
    [
        ({"sub": "staff-2"}, "'sub'"),
        ({"adjustment_id": "adj-2"}, "'adjustment_id'"),
        ({"student_id": "stu-2"}, "'student_id'"),
        ({"amount": 250}, "'amount'"),
        ({"amount": "-250"}, "'amount'"),  # a string is not the number
        ({"amount": None}, "'amount'"),  # missing
    ],
)
def test_every_bound_claim_must_repeat_the_request(claims: dict[str, Any], named: str) -> None:
    assert named in refusal(sign(**claims))


def test_expiry_is_judged_at_the_brokers_time_with_a_small_leeway() -> None:
    assertion = sign(exp=int(AT.timestamp()))
    assert refusal(assertion, AT + timedelta(seconds=30)) is None
    assert "expired" in refusal(assertion, AT + timedelta(seconds=31))
    # Read much later (a backlog), it still holds: it reached the broker in time.
    assert refusal(sign(), AT) is None
    assert "no numeric exp" in refusal(sign(exp=None))
    assert "no numeric exp" in refusal(sign(exp=True))
    # Python's JSON reader takes NaN and Infinity: a NaN exp would never expire.
    assert "no numeric exp" in refusal(sign(exp=float("nan")))
    assert "no numeric exp" in refusal(sign(exp=float("inf")))
    assert refusal(sign(exp=10**400)) is None  # finite, if far: no overflow, no crash
    assert "not valid yet" in refusal(sign(nbf=10**400))
    assert "not valid yet" in refusal(sign(nbf=int(AT.timestamp()) + 60))


def test_only_the_configured_keys_and_their_own_algorithms_verify() -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert "signed by no configured key" in refusal(sign(stranger))
    assert "no actor.assertion" in refusal(None)
    assert "not a JWS" in refusal("not.a.jws")
    # The public key used as an HMAC secret (the classic confusion), and no algorithm at all.
    assert "signed by no configured key" in refusal(_hs256(pem(EC_KEY).encode()))
    unsigned = jwt.encode({"sub": "staff-1", **BOUND}, None, algorithm="none")
    assert "signed by no configured key" in refusal(unsigned)


def _hs256(secret: bytes) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"sub": "staff-1", "exp": int(AT.timestamp()) + 300, **BOUND}
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_a_jwks_keys_kid_picks_the_key() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    keys = json.dumps({"keys": [jwk(other, "old"), jwk(EC_KEY, "new"), jwk(ED_KEY, "ed")]})
    checker = AdminAssertions(load_keys(keys, "keys.json"))
    assert refusal(sign(EC_KEY, kid="new"), checker=checker) is None
    assert refusal(sign(ED_KEY, kid="ed"), checker=checker) is None
    assert refusal(sign(EC_KEY), checker=checker) is None  # no kid: every key of its kind
    assert "no configured key" in refusal(sign(EC_KEY, kid="old"), checker=checker)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "holds no public key"),
        ("{not json", "is not JSON"),
        (json.dumps({"keys": {}}), "a JWKS has a list of keys"),
        (json.dumps({"keys": [{**jwk(EC_KEY, "k"), "d": "secret"}]}), "is a private key"),
        (json.dumps({"kty": "RSA", "n": "AQAB", "e": "AQAB"}), "neither an EC P-256"),
        (json.dumps({**jwk(EC_KEY, "k"), "alg": "ES384"}), "neither an EC P-256"),
        (json.dumps({**jwk(EC_KEY, "k"), "kid": 7}), "kid must be a string"),
    ],
)
def test_an_unusable_key_file_says_why(text: str, says: str) -> None:
    with pytest.raises(KeyFileError, match=says):
        load_keys(text, "keys")


def test_private_rsa_and_other_curve_pem_keys_are_refused() -> None:
    private = EC_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(KeyFileError, match="PRIVATE KEY: give PUBLIC KEY blocks only"):
        load_keys(private, "keys.pem")
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        with pytest.raises(KeyFileError, match="PEM block 1 is neither"):
            load_keys(pem(key), "keys.pem")


# --- through the handlers ---------------------------------------------------------------------

POLICIES = Policies(Rewards(100, 50, 1_000_000), WebhookVerifier({}), CHECKER)


def request(kind: str, data: dict[str, Any], at: str = "2026-11-28T09:00:00Z") -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": "e-1", "type": kind, "source": "admin-console", "time": at,
        "subject": "stu-1", "datacontenttype": "application/json", "data": data,
    }).encode()  # fmt: skip


def adjustment(assertion: object, role: str = "admin") -> dict[str, Any]:
    actor = {"id": "staff-1", "role": role, "assertion": assertion}
    return {**BOUND, "reason": "goodwill", "actor": actor}


def adjust(data: dict[str, Any], appended_at: datetime | None = None, **kw: str) -> CoinCommand:
    kind = "coins.adjustment.requested"
    command = command_for(kind, b"stu-1", request(kind, data, **kw), (), POLICIES, appended_at)
    assert isinstance(command, CoinCommand)
    return command


def test_with_keys_an_adjustment_needs_the_admin_role_and_an_assertion() -> None:
    assert adjust(adjustment(sign())).authorized
    unproven = adjust(adjustment(None))
    assert not unproven.authorized
    assert unproven.unauthorized_because == "no actor.assertion (a compact JWS string)"
    for odd in (5, ["x"], {"jws": "x"}, "x" * 20_000):  # not bad input: simply no proof
        assert not adjust(adjustment(odd)).authorized  # type: ignore[arg-type]
    assert not adjust(adjustment(sign(), role="student")).authorized
    assert not adjust(adjustment(sign(amount=-1))).authorized


def test_the_brokers_append_time_not_the_events_time_judges_expiry() -> None:
    expired_at_append = AT + timedelta(minutes=10)
    # The event's `time` says it is fresh, but the broker appended it after the expiry.
    late = adjust(adjustment(sign()), appended_at=expired_at_append)
    assert not late.authorized
    assert "expired" in (late.unauthorized_because or "")
    # Without an append time (a topic keeping the producer's time) the event's `time` judges.
    assert adjust(adjustment(sign())).authorized
    assert not adjust(adjustment(sign()), at="2026-11-28T09:10:00Z").authorized


def test_with_keys_a_refund_needs_an_assertion_binding_refund_and_payment() -> None:
    kind = "payment.refund.requested"

    def refund(assertion: str | None) -> RefundPayment:
        data = {"refund_id": "rf-1", "payment_id": "pay-1", "reason": "r",
                "actor": {"id": "staff-1", "role": "admin", "assertion": assertion}}  # fmt: skip
        command = command_for(kind, b"stu-1", request(kind, data), (), POLICIES)
        assert isinstance(command, RefundPayment)
        return command

    bound = {"adjustment_id": None, "student_id": None, "amount": None}
    assert refund(sign(**bound, refund_id="rf-1", payment_id="pay-1")).authorized
    assert not refund(sign(**bound, refund_id="rf-1", payment_id="pay-2")).authorized
    assert not refund(sign()).authorized  # an adjustment's assertion


def test_with_keys_a_catalog_upsert_needs_an_assertion_binding_every_field_of_the_item() -> None:
    kind = "catalog.item.upserted"
    item = {"item_id": "v-1", "version": 2, "title": "10% off", "cost_coins": 500, "stock": None,
            "active_from": "2026-12-01T00:00:00Z", "active_until": "2026-12-31T12:00:00.5Z",
            "per_student_limit": None}  # fmt: skip
    claims = {**item, "active_from": 1796083200, "active_until": 1798718400.5}

    def upsert(assertion: str, **changed: Any) -> UpsertItem:
        actor = {"id": "staff-1", "role": "admin", "assertion": assertion}
        data = {**item, **changed, "actor": actor}
        value = request(kind, data).replace(b'"subject": "stu-1"', b'"subject": "v-1"')
        command = command_for(kind, b"v-1", value, (), POLICIES)
        assert isinstance(command, UpsertItem)
        return command

    def signed(**changed: Any) -> str:
        body = {"sub": "staff-1", "exp": int((AT + timedelta(minutes=5)).timestamp()), **claims}
        return jwt.encode({**body, **changed}, EC_KEY, algorithm="ES256")

    assert upsert(signed()).authorized
    # The same assertion for another stock, limit, window or title proves nothing.
    for changed in ({"stock": 1000}, {"per_student_limit": 9}, {"title": "free"},
                    {"active_until": None}, {"active_from": "2026-11-01T00:00:00Z"}):  # fmt: skip
        assert not upsert(signed(), **changed).authorized, changed
    assert not upsert(signed(stock=0)).authorized  # null is not 0
    # A time is any JSON number within a microsecond of it; nothing else.
    assert upsert(signed(active_from=1796083200.0, active_until=1798718400.5000004)).authorized
    for odd in (1796083201, "1796083200", True, 10**400, None):
        assert not upsert(signed(active_from=odd)).authorized, odd


# --- configuration ----------------------------------------------------------------------------


def test_the_setting_reads_jwks_and_pem_files_and_names_itself_when_one_is_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.pem").write_text(pem(EC_KEY))
    (tmp_path / "b.json").write_text(json.dumps({"keys": [jwk(ED_KEY, "ed")]}))
    (tmp_path / "private.pem").write_text(
        ED_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )
    monkeypatch.setenv("ADMIN_ASSERTION_PUBLIC_KEYS", f"{tmp_path}/a.pem, {tmp_path}/b.json")
    assert load_settings(env_file=None).admin_assertion_public_keys
    for bad, says in (("missing.pem", "cannot read"), ("private.pem", "PRIVATE KEY")):
        monkeypatch.setenv("ADMIN_ASSERTION_PUBLIC_KEYS", str(tmp_path / bad))
        with pytest.raises(ConfigError) as raised:
            load_settings(env_file=None)
        message = str(raised.value)
        assert message.startswith("config error: ADMIN_ASSERTION_PUBLIC_KEYS: ")
        assert says in message
        assert "\n" not in message


def test_an_empty_setting_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """As docker-compose passes `${ADMIN_ASSERTION_PUBLIC_KEYS:-}`."""
    monkeypatch.setenv("ADMIN_ASSERTION_PUBLIC_KEYS", "")
    assert load_settings(env_file=None).admin_assertion_public_keys is None


def test_without_keys_an_assertion_of_any_shape_is_ignored() -> None:
    unguarded = Policies(Rewards(100, 50, 1_000_000), WebhookVerifier({}))
    kind = "coins.adjustment.requested"
    for odd in (None, 5, ["x"], "x" * 20_000):
        data = request(kind, adjustment(odd))
        command = command_for(kind, b"stu-1", data, (), unguarded)
        assert command.authorized  # type: ignore[union-attr]


def test_a_proven_adjustment_delivered_again_after_its_assertion_expired_keeps_its_answer() -> None:
    """A new record of the same event (re-sent, replayed from the dead letters) is judged by
    its new append time, after the expiry: its first answer stands, byte for byte."""
    first_record = adjust(adjustment(sign()))
    plan = decide_coins([first_record], {}, {"stu-1": Wallet(1000, 1000, 0)}, AT)
    assert [outcome for _, outcome in plan.outcomes] == ["applied"]
    later_record = adjust(adjustment(sign()), appended_at=AT + timedelta(hours=1))
    assert not later_record.authorized
    again = decide_coins([later_record], plan.decisions, plan.wallets, AT, plan.answers)
    assert again.messages == plan.messages
    assert [outcome for _, outcome in again.outcomes] == ["duplicate"]
    assert not again.entries
