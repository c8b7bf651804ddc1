"""The example's gRPC service, protected by ``TokenAuthInterceptor``.

``example.projects.v1.ProjectService`` has two methods:

* ``ListProjects {"organization_id"} -> {"projects": [...]}``, needs ``projects:read``
  (required by the interceptor's method table);
* ``CreateProject {"organization_id", "name"} -> {project}``, needs ``projects:write``
  (required by ``@require_scopes`` on the handler).

Both answer PERMISSION_DENIED when ``organization_id`` is not the token's
``org_id``. To need no protos, messages are JSON over gRPC generic handlers; a
real service uses its own protos and the interceptor just the same. The gRPC
health service is served too, without a token.
"""

from __future__ import annotations

import json
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from examples.protected_api.projects import ProjectStore
from m2mauth.verify import TokenVerifier, current_token, require_scopes
from m2mauth.verify.grpc_interceptor import TokenAuthInterceptor

SERVICE = "example.projects.v1.ProjectService"
LIST_PROJECTS = f"/{SERVICE}/ListProjects"
CREATE_PROJECT = f"/{SERVICE}/CreateProject"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
MAX_NAME_LENGTH = 100


def encode(message: Any) -> bytes:
    return json.dumps(message).encode()


def decode(data: bytes) -> Any:
    return json.loads(data) if data else {}


class ProjectService:
    def __init__(self, store: ProjectStore) -> None:
        self.store = store

    def list_projects(self, request: Any, context: grpc.ServicerContext) -> Any:
        organization_id = _organization_id(request, context)
        # The tenant check: a token only ever sees its own organization's data.
        current_token().require_org(organization_id)
        return {"projects": [p.to_json() for p in self.store.list(organization_id)]}

    @require_scopes("projects:write")
    def create_project(self, request: Any, context: grpc.ServicerContext) -> Any:
        organization_id = _organization_id(request, context)
        current_token().require_org(organization_id)
        name = request.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name: 1 to 100 characters")
        return self.store.create(organization_id, name).to_json()

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(behavior: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=decode, response_serializer=encode
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListProjects": unary(self.list_projects),
                "CreateProject": unary(self.create_project),
            },
        )


def _organization_id(request: Any, context: grpc.ServicerContext) -> str:
    organization_id = request.get("organization_id") if isinstance(request, dict) else None
    if isinstance(organization_id, str) and organization_id:
        return organization_id
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "organization_id is required")
    raise AssertionError("unreachable: abort raises")


def create_grpc_server(
    verifier: TokenVerifier,
    store: ProjectStore,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    introspect: bool = False,
) -> tuple[grpc.Server, int]:
    """The protected server, not started; port 0 binds a free port (returned).
    ``introspect``: also ask m2mauth whether each token is still active."""
    interceptor = TokenAuthInterceptor(
        verifier,
        public_methods=[HEALTH_CHECK],
        required_scopes={LIST_PROJECTS: ["projects:read"]},
        introspect=introspect,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=[interceptor])
    server.add_generic_rpc_handlers((ProjectService(store).handler(),))
    health_servicer = health.HealthServicer()
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound


class ProjectsClient:
    """How a partner calls the service: its m2mauth access token as Bearer metadata."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._list = channel.unary_unary(
            LIST_PROJECTS, request_serializer=encode, response_deserializer=decode
        )
        self._create = channel.unary_unary(
            CREATE_PROJECT, request_serializer=encode, response_deserializer=decode
        )

    def list_projects(self, organization_id: str, token: str) -> list[dict[str, Any]]:
        reply = self._list(
            {"organization_id": organization_id},
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
        return list(reply["projects"])

    def create_project(self, organization_id: str, name: str, token: str) -> dict[str, Any]:
        reply: dict[str, Any] = self._create(
            {"organization_id": organization_id, "name": name},
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
        return reply
