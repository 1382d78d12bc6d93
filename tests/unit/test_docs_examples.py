"""The signing example in docs/payments.md, run as written: its signature must verify."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from tests.support import ROOT
from worker.core.signatures import WebhookVerifier, stripe_signature

DOC = ROOT / "docs" / "payments.md"
MARKER = "<!-- example: sign-mock-webhook"


def example() -> str:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(re.escape(MARKER) + r".*?\n```sh\n(.*?)```", text, re.DOTALL)
    assert block, f"{DOC} has no signing example"
    return block.group(1)


def test_the_fixed_vector_in_the_docs_is_right() -> None:
    text = DOC.read_text(encoding="utf-8")
    body = re.search(r"body\n  `(\{.*?\})`", text)
    header = re.search(r"`Stripe-Signature: (t=\d+,v1=[0-9a-f]{64})`", text)
    assert body
    assert header
    assert stripe_signature(body.group(1), "whsec_dev_mock_secret", 1795683600) == header.group(1)


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("jq")), reason="no openssl/jq")
def test_the_command_line_example_signs_a_webhook_the_worker_accepts() -> None:
    script = example()
    lines = script.rstrip("\n").splitlines()
    assert "payment-worker send payment.webhook.received" in lines[-1]
    # Run everything but the send; print what it would send instead.
    bash = shutil.which("bash")
    assert bash
    printed = subprocess.run(
        [bash, "-euo", "pipefail", "-c", "\n".join([*lines[:-1], 'printf "%s" "$data"'])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    data = json.loads(printed)
    verifier = WebhookVerifier({"mock": b"whsec_dev_mock_secret"})
    verifier.verify("mock", data["headers"], data["body"], datetime.now(UTC))
    assert json.loads(data["body"])["data"]["amount"] == 49900
