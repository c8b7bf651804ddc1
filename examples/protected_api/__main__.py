"""Run the example API: ``python -m examples.protected_api --audience https://projects.example.com``.

Serves the gRPC service and the HTTP endpoint, both verifying m2mauth tokens
against the issuer's JWKS. Flags fall back to environment variables.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

import uvicorn

from examples.protected_api.grpc_service import create_grpc_server
from examples.protected_api.http_app import create_http_app
from examples.protected_api.projects import ProjectStore
from m2mauth.verify import IntrospectionClient, TokenVerifier

log = logging.getLogger("examples.protected_api")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m examples.protected_api")
    parser.add_argument(
        "--issuer",
        default=env("M2MAUTH_ISSUER", "http://127.0.0.1:8080"),
        help="the m2mauth issuer URL, exactly as in the tokens' iss (env M2MAUTH_ISSUER)",
    )
    parser.add_argument(
        "--audience",
        default=env("PROTECTED_API_AUDIENCE"),
        required=env("PROTECTED_API_AUDIENCE") is None,
        help="this API's identifier, which tokens must carry in aud (env PROTECTED_API_AUDIENCE)",
    )
    parser.add_argument("--jwks-url", default=None, help="default: <issuer>/oauth2/jwks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=50061)
    parser.add_argument("--http-port", type=int, default=8081)
    parser.add_argument(
        "--verifier-key",
        default=env("M2MAUTH_VERIFIER_KEY"),
        help="an m2mauth admin key with the token-verifier role: when given, every token is "
        "also introspected, so a revoked token is refused within --introspection-cache "
        "seconds (env M2MAUTH_VERIFIER_KEY)",
    )
    parser.add_argument("--introspection-cache", type=float, default=30.0)
    parser.add_argument(
        "--allow-http",
        action="store_true",
        help="allow a plain-http JWKS URL on a non-loopback host (trusted networks only)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    issuer = args.issuer.rstrip("/")
    introspection = (
        IntrospectionClient(
            f"{issuer}/oauth2/introspection",
            # The token-verifier key: it may introspect (and revoke) tokens, nothing else.
            bearer_token=args.verifier_key,
            cache_ttl=args.introspection_cache,
            allow_http=args.allow_http,
        )
        if args.verifier_key
        else None
    )
    verifier = TokenVerifier(
        args.issuer,
        args.audience,
        jwks_url=args.jwks_url or f"{issuer}/oauth2/jwks",
        allow_http=args.allow_http,
        introspection=introspection,
    )
    if not verifier.jwks.prefetch():
        log.warning("the issuer's keys are not reachable yet; requests get 503 until they are")
    store = ProjectStore()
    revocation_aware = introspection is not None
    grpc_server, grpc_port = create_grpc_server(
        verifier, store, args.grpc_port, args.host, introspect=revocation_aware
    )
    grpc_server.start()
    log.info("gRPC on %s:%d, HTTP on %s:%d", args.host, grpc_port, args.host, args.http_port)
    try:
        # uvicorn owns SIGINT/SIGTERM; when it returns, stop gRPC too.
        uvicorn.run(
            create_http_app(verifier, store, introspect=revocation_aware),
            host=args.host,
            port=args.http_port,
        )
    finally:
        grpc_server.stop(5).wait()


if __name__ == "__main__":
    main()
