"""The payment providers behind `worker.core.gateway.Gateway`: the mock, Stripe and Razorpay."""
