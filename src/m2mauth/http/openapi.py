"""The OpenAPI 3.1 description of the HTTP shim, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE, MAX_ASSERTION_LENGTH
from m2mauth.core.registry import SUPPORTED

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "error_description": {"type": "string"},
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": (
                "Too many failed authentications from this caller, or the application's "
                "token quota is used up (rate_limited, quota_exceeded; RFC 6585 section 4). "
                "Retry-After says when to retry."
                if code == 429
                else "An OAuth error (RFC 6749 section 5.2)."
            ),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            **(
                {"headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}}
                if code == 429
                else {}
            ),
        }
        for code in codes
    }


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


_CLIENT_FIELDS = {
    "client_id": {"type": "string", "description": "With client_secret_post."},
    "client_secret": {"type": "string", "description": "With client_secret_post."},
}
# private_key_jwt (RFC 7523 section 2.2).
_ASSERTION_FIELDS: dict[str, Any] = {
    "client_assertion_type": {
        "type": "string",
        "enum": [JWT_BEARER_ASSERTION_TYPE],
        "description": "With private_key_jwt.",
    },
    "client_assertion": {
        "type": "string",
        "maxLength": MAX_ASSERTION_LENGTH,
        "description": "With private_key_jwt: a JWT signed with a key of the application's "
        "JWK Set (iss = sub = client_id, aud = the issuer or the token endpoint URL, exp "
        "required and at most an hour ahead unless configured otherwise, a jti used once).",
    },
}
_TOKEN_FIELDS = {
    "token": {"type": "string"},
    "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
    **_CLIENT_FIELDS,
    **_ASSERTION_FIELDS,
}
# client_secret_post has no OpenAPI security scheme: the credentials are the
# client_id/client_secret form fields above. An apiKey scheme would have to
# say "in: query", and RFC 6749 section 2.3.1 forbids credentials in the URI.
# The empty requirement is that alternative.
_SECURITY_TOKEN: list[dict[str, list[str]]] = [
    {"client_secret_basic": []},
    {},
]
_SECURITY_ADMIN: list[dict[str, list[str]]] = [*_SECURITY_TOKEN, {"admin_key": []}]


def openapi_document(issuer: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "m2mauth OAuth 2.0 endpoints",
            "version": "1",
            "description": "client_credentials tokens (RFC 6749 section 4.4, RFC 9068), "
            "introspection (RFC 7662), revocation (RFC 7009), JWKS and metadata (RFC 8414).",
        },
        "servers": [{"url": issuer}],
        "paths": {
            "/oauth2/token": {
                "post": {
                    "summary": "Issue an access token (client_credentials).",
                    "operationId": "issueToken",
                    "security": _SECURITY_TOKEN,
                    "requestBody": _form(
                        {
                            "grant_type": {"type": "string", "enum": list(SUPPORTED.grant_types)},
                            "scope": {"type": "string"},
                            "resource": {"type": "string"},
                            "audience": {"type": "string"},
                            **_CLIENT_FIELDS,
                            **_ASSERTION_FIELDS,
                        },
                        ["grant_type"],
                    ),
                    "responses": {
                        "200": {
                            "description": "The token (RFC 6749 section 5.1).",
                            "headers": {"Cache-Control": {"schema": {"const": "no-store"}}},
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/TokenResponse"}
                                }
                            },
                        },
                        **_errors(400, 401, 405, 413, 429, 503),
                    },
                }
            },
            "/oauth2/introspection": {
                "post": {
                    "summary": "Introspect a token (RFC 7662).",
                    "operationId": "introspectToken",
                    "security": _SECURITY_ADMIN,
                    "requestBody": _form(_TOKEN_FIELDS, ["token"]),
                    "responses": {
                        "200": {
                            "description": "Whether the token is active, and its claims if so.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Introspection"}
                                }
                            },
                        },
                        **_errors(400, 401, 405, 413, 429, 503),
                    },
                }
            },
            "/oauth2/revoke": {
                "post": {
                    "summary": "Revoke a token (RFC 7009).",
                    "operationId": "revokeToken",
                    "security": _SECURITY_ADMIN,
                    "requestBody": _form(_TOKEN_FIELDS, ["token"]),
                    "responses": {
                        "200": {"description": "Revoked, or the token was not valid anyway."},
                        **_errors(400, 401, 405, 413, 429, 503),
                    },
                }
            },
            "/oauth2/jwks": {"get": _jwks_operation("getJwks")},
            "/.well-known/jwks.json": {"get": _jwks_operation("getJwksWellKnown")},
            "/.well-known/oauth-authorization-server": {
                "get": {
                    "summary": "Authorization server metadata (RFC 8414).",
                    "operationId": "getMetadata",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The metadata document.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": [
                                            "issuer",
                                            "token_endpoint",
                                            "jwks_uri",
                                            "grant_types_supported",
                                        ],
                                    }
                                }
                            },
                        },
                        **_errors(503),
                    },
                }
            },
            "/healthz": {"get": _plain("getHealth", "The process is up.", ())},
            "/readyz": {"get": _plain("getReady", "The store is reachable.", (503,))},
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "operationId": "getOpenApi",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 document of the shim.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "client_secret_basic": {"type": "http", "scheme": "basic"},
                "admin_key": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": _ERROR,
                "TokenResponse": {
                    "type": "object",
                    "required": ["access_token", "token_type", "expires_in"],
                    "properties": {
                        "access_token": {"type": "string"},
                        "token_type": {"const": "Bearer"},
                        "expires_in": {"type": "integer", "minimum": 0},
                        "scope": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "Introspection": {
                    "type": "object",
                    "required": ["active"],
                    "properties": {
                        "active": {"type": "boolean"},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "token_type": {"type": "string"},
                        "exp": {"type": "integer"},
                        "iat": {"type": "integer"},
                        "sub": {"type": "string"},
                        "aud": {
                            "oneOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                            ]
                        },
                        "iss": {"type": "string"},
                        "jti": {"type": "string"},
                        "org_id": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "Jwks": {
                    "type": "object",
                    "required": ["keys"],
                    "properties": {
                        "keys": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["kty", "kid", "alg", "use"],
                                "not": {"anyOf": [{"required": ["d"]}, {"required": ["p"]}]},
                            },
                        }
                    },
                },
            },
        },
    }


def _jwks_operation(operation_id: str) -> dict[str, Any]:
    return {
        "summary": "The public signing keys (RFC 7517 JWK Set).",
        "operationId": operation_id,
        "security": [],
        "responses": {
            "200": {
                "description": "The JWK Set; cache for the Cache-Control max-age.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Jwks"}}},
            },
            **_errors(503),
        },
    }


def _plain(operation_id: str, description: str, errors: tuple[int, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": description,
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    for code in errors:
        responses[str(code)] = {
            "description": "Not ready.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    return {
        "summary": description,
        "operationId": operation_id,
        "security": [],
        "responses": responses,
    }
