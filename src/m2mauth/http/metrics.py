"""Prometheus metrics of the HTTP shim: requests and latency by endpoint and outcome,
tokens issued by organization."""

from __future__ import annotations

import base64
import json

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ShimMetrics"]


class ShimMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "m2mauth_http_requests",
            "HTTP requests by endpoint and outcome (ok or the OAuth error code).",
            ("endpoint", "outcome"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "m2mauth_http_request_duration_seconds",
            "HTTP request latency by endpoint.",
            ("endpoint",),
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.tokens = Counter(
            "m2mauth_tokens_issued",
            "Access tokens issued, by organization.",
            ("org_id",),
            registry=self.registry,
        )

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def token_issued(self, access_token: str) -> None:
        self.tokens.labels(_org_of(access_token)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _org_of(access_token: str) -> str:
    """The org_id claim of a token we just issued (already trusted: no verification)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("org_id", "unknown"))
    except (IndexError, ValueError):
        return "unknown"
