"""`RecordingProxy`: a reverse proxy in front of stripe-mock that records what it forwards.

stripe-mock (Stripe's API simulator) keeps no state and remembers no request, so a test
points the worker's Stripe client at the proxy instead (`base_addresses={"api":
proxy.base_url}`) and reads `proxy.requests` afterwards: the Idempotency-Key sent, the form
body, how many attempts were made.

It forwards the method, path, query, headers (less the hop-by-hop ones) and body, and answers
with upstream's status, headers and body. The faults of `base.ProviderServer` apply, and
`hold_after_forward()` holds an answer after stripe-mock gave it, so the test can kill the
worker after Stripe did the work and before the worker committed.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit

from tests.providers.base import Hold, ProviderServer, Reply
from tests.providers.recorded import Recorded

# RFC 9110 section 7.6.1, and the framing headers the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def stripe_error(
    error_type: str, message: str, *, code: str | None = None, **details: Any
) -> dict[str, Any]:
    """Stripe's error body (https://docs.stripe.com/api/errors), for `fail_next`: `error_type`
    is "card_error", "invalid_request_error", "api_error", "idempotency_error"...; `details`
    adds fields such as `decline_code`, `param` or `payment_intent`."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return {"error": {**error, **details}}


class RecordingProxy(ProviderServer):
    def __init__(self, upstream_base_url: str, *, timeout: float = 10.0) -> None:
        super().__init__()
        upstream = urlsplit(upstream_base_url)
        if upstream.scheme != "http" or upstream.hostname is None:
            raise ValueError(f"an http:// upstream is needed, not {upstream_base_url!r}")
        self.upstream_host = upstream.hostname
        self.upstream_port = upstream.port or 80
        self.timeout = timeout

    def hold_after_forward(self) -> Hold:
        """The next request is forwarded and answered by upstream, then `hold.forwarded` is
        set and the answer waits until `hold.release()` (or the proxy's `release()`)."""
        return self._hold_next()

    def handle(self, request: Recorded) -> Reply:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
        connection = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.timeout
        )
        try:
            connection.request(
                request.method, request.target, body=request.body or None, headers=headers
            )
            response = connection.getresponse()
            body = response.read()
            status = response.status
            answer = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        except OSError as e:
            return Reply.json(502, stripe_error("api_error", f"proxy: upstream failed: {e}"))
        finally:
            connection.close()
        return Reply(status, body, answer)
