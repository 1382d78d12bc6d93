"""The HTTP sidecar: health, readiness, metrics, the read API and the admin audit trail."""
