"""`RazorpayServer`: Razorpay's API v1 for payment links, payments and refunds, with state.

Razorpay publishes no simulator, so this answers the documented endpoints with the documented
shapes (the sources are named where each shape is built):

    POST /v1/payment_links                  GET /v1/payment_links?reference_id=&payment_id=
    GET  /v1/payment_links/{id}             POST /v1/payment_links/{id}/cancel
    GET  /v1/payments/{id}                  POST /v1/payments/{id}/refund
    GET  /v1/payments/{id}/refunds          GET  /v1/payments/{id}/refunds/{refund_id}

Requests need HTTP Basic auth with the key id and secret given to the constructor. What a
customer does on Razorpay's side, the test does with `pay` and `expire`; `webhook` then builds
the signed webhook Razorpay would send about it.

Errors answer `{"error": {"code", "description", "field", "source", "step", "reason",
"metadata"}}` (https://razorpay.com/docs/errors), which the razorpay SDK turns into
`BadRequestError` / `GatewayError` / `ServerError` by `code`, with `description` as message.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from tests.providers import webhooks
from tests.providers.base import Hold, ProviderServer, Reply
from tests.providers.recorded import Recorded

# Request fields of "Create a Standard Payment Link"
# (https://razorpay.com/docs/api/payments/payment-links/create-standard); any other field is
# refused as Razorpay does ("{field} is/are not required and should not be sent").
LINK_FIELDS = frozenset(
    {
        "amount",
        "currency",
        "accept_partial",
        "first_min_partial_amount",
        "description",
        "reference_id",
        "customer",
        "expire_by",
        "notify",
        "reminder_enable",
        "notes",
        "callback_url",
        "callback_method",
        "upi_link",
        "options",
    }
)
# Request fields of "Create a Normal Refund" (https://razorpay.com/docs/api/refunds/create-normal)
REFUND_FIELDS = frozenset({"amount", "speed", "notes", "receipt"})
MIN_AMOUNT = 100  # "The amount must be at least INR 1.00"
MIN_EXPIRY_SECONDS = 15 * 60  # "timestamp must be atleast 15 minutes in future"
IDEMPOTENCY_HEADER = "X-Refund-Idempotency"
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]+")

# Error descriptions: those below are listed in the API docs' "Errors" sections, or marked
# (source) where Razorpay's own API source (PublicErrorDescription) gives the exact string.
# Messages written inline elsewhere in this module follow the docs' patterns ("The {field}
# field is required.") but were not found verbatim: treat their wording as an assumption.
AUTH_FAILED = "Authentication failed"
URL_NOT_FOUND = "The requested URL was not found on the server."
ID_NOT_FOUND = "The id provided does not exist"
DUPLICATE_REFERENCE_ID = "payment link creation with reference ID already attempted"
LINK_ALREADY_PAID = "cannot cancel or expire an already paid/partially paid link"
LINK_ALREADY_CLOSED = "cannot cancel or expire an expired link"
EXPIRY_TOO_SOON = "timestamp must be atleast 15 minutes in future"
NOT_CAPTURED = "The payment status should be captured for action to be taken"  # (source)
FULLY_REFUNDED = "The payment has been fully refunded already"  # (source)
REFUND_TOO_LARGE = "The refund amount provided is greater than amount captured"  # (source)
IDEMPOTENCY_MISMATCH = "Different request with the same idempotency key has already been processed."

_ALNUM = string.ascii_letters + string.digits


class RazorpayError(Exception):
    """A request Razorpay refuses: answered `status` with `razorpay_error(...)`."""

    def __init__(self, description: str, *, status: int = 400, **details: Any) -> None:
        super().__init__(description)
        self.status = status
        self.body = razorpay_error(description, **details)


def razorpay_error(
    description: str,
    *,
    code: str = "BAD_REQUEST_ERROR",
    field: str | None = None,
    source: str = "NA",
    step: str = "NA",
    reason: str = "NA",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Razorpay's error body (also for `fail_next`: code "SERVER_ERROR" or "GATEWAY_ERROR")."""
    return {
        "error": {
            "code": code,
            "description": description,
            "field": field,
            "source": source,
            "step": step,
            "reason": reason,
            "metadata": metadata or {},
        }
    }


def new_id(prefix: str, length: int = 14) -> str:
    """`<prefix>_` and 14 letters and digits, like Razorpay's ids (`plink_Fo48rl281ENAg9`)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALNUM) for _ in range(length))


class RazorpayServer(ProviderServer):
    def __init__(
        self,
        key_id: str = "rzp_test_key",
        key_secret: str = "rzp_test_secret",  # noqa: S107 - a test fixture
        *,
        webhook_secret: str = "rzp_webhook_secret",  # noqa: S107 - a test fixture
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.key_id, self.key_secret, self.webhook_secret = key_id, key_secret, webhook_secret
        self.clock = clock
        self.links: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        # payment id -> its refunds, oldest first; link id -> the order its payments went to
        self.refunds: dict[str, list[dict[str, Any]]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        # X-Refund-Idempotency key -> (payment id, request body, the refund it made)
        self._idempotent: dict[str, tuple[str, Any, dict[str, Any]]] = {}
        self._state = threading.RLock()

    def hold_after_processing(self) -> Hold:
        """The next request is applied to the state, then its answer waits for `release()`."""
        return self._hold_next()

    def now(self) -> int:
        return int(self.clock())

    # -- what customers do ------------------------------------------------------------------

    def pay(
        self,
        link_id: str,
        *,
        method: str = "upi",
        status: Literal["captured", "authorized", "failed"] = "captured",
    ) -> str:
        """A customer pays the link; returns the payment's id.

        "captured" (Razorpay captures payment-link payments itself) marks the link paid:
        `amount_paid` = `amount`, the payment appended to its `payments`. "authorized" and
        "failed" leave the link as it was (its `payments` list captured payments only).
        """
        with self._state:
            link = self._link(link_id)
            if link["status"] != "created":
                raise ValueError(f"{link_id} is {link['status']}; only a created link can be paid")
            now = self.now()
            order = self.orders.get(link_id) or self._new_order(link, now)
            payment = webhooks.razorpay_payment(
                id=new_id("pay"),
                amount=link["amount"],
                currency=link["currency"],
                order_id=order["id"],
                method=method,
                description=f"#{link_id.removeprefix('plink_')}",
                notes=link["notes"] or [],
                created_at=now,
            )
            if status == "failed":
                payment.update(webhooks.RAZORPAY_PAYMENT_FAILED)
            elif status == "authorized":
                payment.update(status="authorized", captured=False)
            self.payments[payment["id"]] = payment
            link["order_id"] = order["id"]
            link["updated_at"] = now
            if status == "captured":
                order.update(
                    amount_paid=link["amount"], amount_due=0, status="paid", updated_at=now
                )
                link.update(status="paid", amount_paid=link["amount"])
                link["payments"] = [
                    *(link["payments"] or []),
                    {
                        "amount": payment["amount"],
                        "created_at": now,
                        "method": method,
                        "payment_id": payment["id"],
                        "plink_id": link_id,
                        "status": "captured",
                        "updated_at": now,
                    },
                ]
            return str(payment["id"])

    def expire(self, link_id: str) -> None:
        """The link expires now, as Razorpay expires it at `expire_by`."""
        with self._state:
            link = self._link(link_id)
            now = self.now()
            link.update(status="expired", expired_at=now, updated_at=now)

    def webhook(self, event: str, entity_id: str) -> tuple[str, dict[str, str]]:
        """The body and headers of the webhook Razorpay sends for `event` about the link (for
        `payment_link.*`) or the payment (for `payment.*`) `entity_id`, as it is now."""
        with self._state:
            if event.startswith("payment_link."):
                link = self._link(entity_id)
                # the documented webhook entity is the API's without `payments`
                entity = {k: v for k, v in link.items() if k != "payments"}
                payload: dict[str, dict[str, Any]] = {"payment_link": entity}
                if link["payments"]:
                    payload["payment"] = self.payments[link["payments"][-1]["payment_id"]]
                    payload["order"] = self.orders[entity_id]
            else:
                payload = {"payment": self._payment(entity_id)}
            body = webhooks.razorpay_event(event, payload, created_at=self.now())
        return body, webhooks.razorpay_signature_header(body, self.webhook_secret)

    # -- the API ----------------------------------------------------------------------------

    def handle(self, request: Recorded) -> Reply:
        try:
            self._authenticate(request)
            with self._state:
                status, body = self._route(request)
        except RazorpayError as e:
            return Reply.json(e.status, e.body)
        return Reply.json(status, body)

    def _authenticate(self, request: Recorded) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            key_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key_id = secret = ""
        good_id = hmac.compare_digest(key_id.encode(), self.key_id.encode())
        good_secret = hmac.compare_digest(secret.encode(), self.key_secret.encode())
        if scheme.lower() != "basic" or not (good_id and good_secret):
            raise RazorpayError(AUTH_FAILED, status=401)

    def _route(self, request: Recorded) -> tuple[int, Any]:
        parts = request.path.rstrip("/").split("/")[1:]  # "/v1/payments/x" -> v1, payments, x
        match request.method, parts:
            case "POST", ["v1", "payment_links"]:
                return 200, self._create_link(_json_object(request))
            case "GET", ["v1", "payment_links"]:
                return 200, {"payment_links": self._find_links(request.query)}
            case "GET", ["v1", "payment_links", link_id]:
                return 200, self._link(link_id)
            case "POST", ["v1", "payment_links", link_id, "cancel"]:
                return 200, self._cancel_link(link_id)
            case "GET", ["v1", "payments", payment_id]:
                return 200, self._payment(payment_id)
            case "POST", ["v1", "payments", payment_id, "refund"]:
                key = request.headers.get(IDEMPOTENCY_HEADER)
                return self._refund(payment_id, _json_object(request), key)
            case "GET", ["v1", "payments", payment_id, "refunds"]:
                items = list(reversed(self.refunds.get(self._payment(payment_id)["id"], [])))
                return 200, {"entity": "collection", "count": len(items), "items": items}
            case "GET", ["v1", "payments", payment_id, "refunds", refund_id]:
                for refund in self.refunds.get(self._payment(payment_id)["id"], []):
                    if refund["id"] == refund_id:
                        return 200, refund
                raise RazorpayError(ID_NOT_FOUND)
        raise RazorpayError(URL_NOT_FOUND)  # 400, not 404: the docs list it as "code: 400"

    # -- payment links ----------------------------------------------------------------------

    def _create_link(self, body: dict[str, Any]) -> dict[str, Any]:
        _refuse_extra_fields(body, LINK_FIELDS)
        amount = _amount(body.get("amount"), required=True)
        currency = body.get("currency", "INR")
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
            raise RazorpayError("The currency is invalid.", field="currency")
        reference_id = body.get("reference_id", "")
        if not isinstance(reference_id, str) or len(reference_id) > 40:
            raise RazorpayError(
                "The reference id may not be greater than 40 characters.", field="reference_id"
            )
        if reference_id and any(x["reference_id"] == reference_id for x in self.links.values()):
            raise RazorpayError(DUPLICATE_REFERENCE_ID)
        now = self.now()
        expire_by = body.get("expire_by", 0)
        if expire_by and (not isinstance(expire_by, int) or expire_by < now + MIN_EXPIRY_SECONDS):
            raise RazorpayError(EXPIRY_TOO_SOON, field="expire_by")
        if "callback_url" in body and body.get("callback_method") != "get":
            raise RazorpayError(
                "The callback method field is required when callback url is present.",
                field="callback_method",
            )
        notes = body.get("notes")
        if notes is not None and (
            not isinstance(notes, dict)
            or len(notes) > 15
            or any(len(str(v)) > 255 for v in notes.values())
        ):
            raise RazorpayError("value: the length must not be greater than 255.", field="notes")
        link = webhooks.razorpay_payment_link(
            id=new_id("plink"),
            short_url="https://rzp.io/i/" + "".join(secrets.choice(_ALNUM) for _ in range(8)),
            status="created",
            amount=amount,
            amount_paid=0,
            currency=currency,
            accept_partial=bool(body.get("accept_partial", False)),
            first_min_partial_amount=body.get("first_min_partial_amount", 0),
            description=body.get("description", ""),
            reference_id=reference_id,
            customer=body.get("customer", {}),
            notify=body.get("notify", {"email": False, "sms": False, "whatsapp": False}),
            reminder_enable=bool(body.get("reminder_enable", False)),
            reminders=[],
            notes=notes or None,
            expire_by=expire_by,
            expired_at=0,
            cancelled_at=0,
            payments=None,  # "Until then, the value is null."
            created_at=now,
            updated_at=now,
            upi_link=bool(body.get("upi_link", False)),
        )
        for name in ("callback_url", "callback_method"):
            if name in body:
                link[name] = body[name]
        self.links[link["id"]] = link
        return link

    def _find_links(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """Newest first, filtered by `reference_id` and `payment_id` as given."""
        reference_id = query.get("reference_id", [None])[-1]
        payment_id = query.get("payment_id", [None])[-1]
        found = []
        for link in reversed(list(self.links.values())):
            self._expire_if_due(link)
            paid_by = {p["payment_id"] for p in link["payments"] or []}
            if reference_id is not None and link["reference_id"] != reference_id:
                continue
            if payment_id is not None and payment_id not in paid_by:
                continue
            found.append(link)
        return found

    def _cancel_link(self, link_id: str) -> dict[str, Any]:
        link = self._link(link_id)
        if link["status"] in ("paid", "partially_paid"):
            raise RazorpayError(LINK_ALREADY_PAID)
        if link["status"] in ("cancelled", "expired"):
            raise RazorpayError(LINK_ALREADY_CLOSED)
        now = self.now()
        link.update(status="cancelled", cancelled_at=now, updated_at=now)
        return link

    def _link(self, link_id: str) -> dict[str, Any]:
        link = self.links.get(link_id)
        if link is None:
            raise RazorpayError(ID_NOT_FOUND)
        self._expire_if_due(link)
        return link

    def _expire_if_due(self, link: dict[str, Any]) -> None:
        if link["status"] == "created" and link["expire_by"] and self.now() >= link["expire_by"]:
            link.update(status="expired", expired_at=link["expire_by"], updated_at=self.now())

    def _new_order(self, link: dict[str, Any], now: int) -> dict[str, Any]:
        order = webhooks.razorpay_order(
            id=new_id("order"),
            amount=link["amount"],
            amount_due=link["amount"],
            amount_paid=0,
            currency=link["currency"],
            receipt=link["reference_id"],
            notes=link["notes"] or [],
            product_id=link["id"].removeprefix("plink_"),
            status="attempted",
            created_at=now,
            updated_at=now,
        )
        self.orders[link["id"]] = order
        return order

    # -- payments and refunds ---------------------------------------------------------------

    def _payment(self, payment_id: str) -> dict[str, Any]:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise RazorpayError(ID_NOT_FOUND)
        return payment

    def _refund(
        self, payment_id: str, body: dict[str, Any], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Create a Normal Refund, idempotent under `X-Refund-Idempotency`
        (https://razorpay.com/docs/api/refunds/normal-refunds-idempotent): the same key with
        the same request answers the refund it made; with another request, 409."""
        if key is not None:
            if len(key) < 10:
                raise RazorpayError("The idempotency key must be at least 10 characters long.")
            if not IDEMPOTENCY_KEY.fullmatch(key):
                raise RazorpayError(
                    "The idempotency key must only contain alphanumeric characters, "
                    "underscores, and hyphens"
                )
            if key in self._idempotent:
                first_payment, first_body, refund = self._idempotent[key]
                if (first_payment, first_body) != (payment_id, body):
                    raise RazorpayError(IDEMPOTENCY_MISMATCH, status=409)
                return 200, refund
        payment = self._payment(payment_id)
        _refuse_extra_fields(body, REFUND_FIELDS)
        if payment["status"] == "refunded":
            raise RazorpayError(FULLY_REFUNDED, field="payment_id")
        if payment["status"] != "captured":
            raise RazorpayError(NOT_CAPTURED, field="payment_id")
        remaining = payment["amount"] - payment["amount_refunded"]
        amount = remaining if body.get("amount") is None else _amount(body["amount"])
        if amount > remaining:
            raise RazorpayError(REFUND_TOO_LARGE, field="amount")
        speed = body.get("speed", "normal")
        if speed not in ("normal", "optimum"):
            raise RazorpayError("The selected speed is invalid.", field="speed")
        refund = {
            "id": new_id("rfnd"),
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment_id,
            "notes": body.get("notes") or [],
            "receipt": body.get("receipt"),
            "acquirer_data": {"arn": None},
            "created_at": self.now(),
            "batch_id": None,
            "status": "processed",
            "speed_processed": "normal",
            "speed_requested": speed,
        }
        self.refunds.setdefault(payment_id, []).append(refund)
        payment["amount_refunded"] += amount
        fully = payment["amount_refunded"] == payment["amount"]
        payment["refund_status"] = "full" if fully else "partial"
        if fully:
            payment["status"] = "refunded"
        if key is not None:
            self._idempotent[key] = (payment_id, body, refund)
        return 200, refund


def _json_object(request: Recorded) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise RazorpayError("The request body must be a JSON object.")
    return body


def _refuse_extra_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise RazorpayError(
            f"{', '.join(extra)} is/are not required and should not be sent", field=extra[0]
        )


def _amount(value: Any, *, required: bool = False) -> int:
    """Amounts are integers in the currency's smallest unit, at least 100 (INR 1.00)."""
    if value is None and required:
        raise RazorpayError("The amount field is required.", field="amount")
    if not isinstance(value, int) or isinstance(value, bool):
        raise RazorpayError("The amount must be an integer.", field="amount")
    if value < MIN_AMOUNT:
        raise RazorpayError(  # the documented example error of "Create a Normal Refund"
            "The amount must be at least INR 1.00",
            field="amount",
            source="business",
            step="payment_initiation",
            reason="input_validation_failed",
        )
    return value
