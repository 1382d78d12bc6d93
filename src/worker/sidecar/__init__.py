"""The HTTP sidecar: health, readiness, metrics and (later) the read API."""
