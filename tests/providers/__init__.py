"""Stand-ins for the payment providers: real HTTP servers the worker's SDK calls reach.

- `razorpay_server.RazorpayServer`: Razorpay's API v1 (payment links, payments, refunds),
  with state, since Razorpay publishes no simulator.
- `recording_proxy.RecordingProxy`: sits in front of stripe-mock (which keeps no state) and
  records what the worker sent.
- `webhooks`: the providers' webhook bodies, built from their documented examples, and signed.

Both servers record every request (`recorded.Recorded`) and take faults from the test
(`base.ProviderServer`): canned failures, hangs, and holds after the provider did the work.
"""
