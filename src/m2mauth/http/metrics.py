"""Prometheus metrics of the HTTP shim: requests and latency by endpoint and outcome,
tokens issued (by organization only when asked), served on a port of their own.

Not on the OAuth port: metrics describe the deployment (which organizations get
tokens, how often, what fails) and are for the operator's scraper, which reaches
--metrics-host, not for partners on the internet. Every label has a bounded set
of values unless --metrics-org-labels adds one series per organization.
"""

from __future__ import annotations

import base64
import json

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["CONTENT_TYPE_LATEST", "ShimMetrics", "create_metrics_app"]


class ShimMetrics:
    def __init__(self, *, org_labels: bool = False) -> None:
        self.org_labels = org_labels
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
            "Access tokens issued" + (", by organization." if org_labels else "."),
            ("org_id",) if org_labels else (),
            registry=self.registry,
        )

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def token_issued(self, access_token: str) -> None:
        if self.org_labels:
            self.tokens.labels(_org_of(access_token)).inc()
        else:
            self.tokens.inc()

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


def create_metrics_app(metrics: ShimMetrics) -> Starlette:
    """The metrics listener: GET /metrics and nothing else."""

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", prometheus, methods=["GET"])])
