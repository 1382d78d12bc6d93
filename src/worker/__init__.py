"""payment-worker: applies learning-platform events to a coin ledger and payments, exactly once."""
