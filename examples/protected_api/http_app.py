"""The example's HTTP endpoint (Starlette), protected by ``BearerAuthMiddleware``.

* ``GET  /v1/organizations/{org_id}/projects`` needs ``projects:read``;
* ``POST /v1/organizations/{org_id}/projects`` ``{"name"}`` needs ``projects:write``;
* ``GET  /healthz`` is public.

Another organization's ``org_id`` in the path is 403; a missing scope is 403
with ``WWW-Authenticate: Bearer error="insufficient_scope"``; a bad token is 401.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from examples.protected_api.projects import ProjectStore
from m2mauth.verify import TokenVerifier, current_token, require_scopes
from m2mauth.verify.asgi import BearerAuthMiddleware

MAX_NAME_LENGTH = 100


def create_http_app(
    verifier: TokenVerifier, store: ProjectStore, *, introspect: bool = False
) -> Starlette:
    """``introspect``: also ask m2mauth whether each token is still active (revocation)."""

    @require_scopes("projects:read")
    async def list_projects(request: Request) -> Response:
        org_id = request.path_params["org_id"]
        current_token().require_org(org_id)  # 403 for another organization
        return JSONResponse({"projects": [p.to_json() for p in store.list(org_id)]})

    @require_scopes("projects:write")
    async def create_project(request: Request) -> Response:
        org_id = request.path_params["org_id"]
        current_token().require_org(org_id)
        try:
            name = json.loads(await request.body()).get("name")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            return JSONResponse({"error": "name: 1 to 100 characters"}, status_code=400)
        return JSONResponse(store.create(org_id, name).to_json(), status_code=201)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(
        routes=[
            Route("/v1/organizations/{org_id}/projects", list_projects, methods=["GET"]),
            Route("/v1/organizations/{org_id}/projects", create_project, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                BearerAuthMiddleware,
                verifier=verifier,
                public_paths=["/healthz"],
                realm="projects",
                introspect=introspect,
            )
        ],
    )
