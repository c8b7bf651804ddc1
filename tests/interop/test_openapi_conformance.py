"""schemathesis against the shim's own /openapi.json: no 5xx, and every response is
one the document describes (status code, content type, body schema, headers).

Generated requests are mostly wrong in some way (random scopes, tokens,
credentials): that is the point, since every one of those answers must be a
documented one too. The authenticated variant sends a real client's Basic
credentials and real tokens, so the success paths are checked as well.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from m2mauth.http.openapi import openapi_document
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.http.conftest import Partner, Shim, running_shim

Case = schemathesis.Case[Any]

# The checks named by the issue; explicit, so a schemathesis upgrade that adds
# default checks does not silently change what this test asserts.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Bounded, so the whole interop suite stays well under a minute; set
# M2MAUTH_INTEROP_MAX_EXAMPLES for a deeper run (400 per operation takes ~2 min).
EXAMPLES = settings(
    max_examples=int(os.environ.get("M2MAUTH_INTEROP_MAX_EXAMPLES", "50")),
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def conformance_shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    # One server for every generated case (module scope): the cases are many.
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'm2mauth.db'}"
    migrate(url)
    store = SqlStore(url)
    try:
        with running_shim(store, "in_process") as shim:
            yield shim
    finally:
        store.close()


@pytest.fixture(scope="module")
def conformance_partner(conformance_shim: Shim) -> Partner:
    return conformance_shim.partner(scopes=("invoices:read", "invoices:write"))


@pytest.fixture(scope="module")
def openapi_schema(conformance_shim: Shim) -> schemathesis.BaseSchema:
    # The document as served, from its URL: what a client generator would read.
    return schemathesis.openapi.from_url(f"{conformance_shim.base_url}/openapi.json")


def documented_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, from the code that serves the document
    (the served copy is compared with it below), so each gets its own test id."""
    paths = openapi_document("http://document.invalid")["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


OPERATIONS = documented_operations()
FORM_OPERATIONS = [(m, p) for m, p in OPERATIONS if m == "POST"]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# Negative cases (data the document forbids) exist only where there is input to
# break: the form bodies. The GET operations take no parameters.
GENERATED = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path in OPERATIONS
    for mode in (MODES if method == "POST" else (GenerationMode.POSITIVE,))
]
AUTHENTICATED = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path in FORM_OPERATIONS
    for mode in MODES
]


def run_generated(
    schema: schemathesis.BaseSchema,
    method: str,
    path: str,
    mode: GenerationMode,
    call: Callable[[Case, bool], None],
) -> int:
    """Run ``call`` on cases schemathesis generates for one operation; how many ran.

    ``call`` also gets a boolean Hypothesis draws with each case, for choices the
    test makes per case (drawn, not random, so a failing case replays exactly).

    schemathesis's own pytest integration (``schemathesis.pytest.from_fixture``)
    does not run under pytest 9 (it sets ``Function._nodeid``, which pytest 9
    dropped), so its strategies are driven by Hypothesis directly, as its
    Python API allows.
    """
    strategy = schema[path][method].as_strategy(generation_mode=mode)
    ran = 0

    @EXAMPLES
    @given(case=strategy, coin=st.booleans())
    def each(case: Case, coin: bool) -> None:
        nonlocal ran
        ran += 1
        call(case, coin)

    each()
    return ran


def basic_header(partner: Partner) -> str:
    raw = f"{quote_plus(partner.client_id)}:{quote_plus(partner.client_secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def real_token(shim: Shim, partner: Partner) -> str:
    response = httpx.post(
        f"{shim.base_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": basic_header(partner)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize(("method", "path", "mode"), GENERATED)
def test_generated_requests_get_documented_responses(
    openapi_schema: schemathesis.BaseSchema,
    conformance_shim: Shim,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    def call(case: Case, coin: bool) -> None:
        case.call_and_validate(base_url=conformance_shim.base_url, checks=CHECKS)

    assert run_generated(openapi_schema, method, path, mode, call) > 0


@pytest.mark.parametrize(("method", "path", "mode"), AUTHENTICATED)
def test_authenticated_requests_get_documented_responses(
    openapi_schema: schemathesis.BaseSchema,
    conformance_shim: Shim,
    conformance_partner: Partner,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    # A real client's credentials (client_secret_basic), so the token endpoint
    # issues tokens and introspection/revocation see authenticated callers.
    # Client credentials generated into the form body then make the request a
    # documented 400 (two authentication methods, RFC 6749 section 2.3).
    statuses: list[int] = []
    active: list[bool] = []

    def call(case: Case, well_formed: bool) -> None:
        if well_formed and isinstance(case.body, dict):
            # The case a real client sends: no second authentication method, no
            # made-up scope or audience, and a real token to introspect or revoke.
            for name in ("client_id", "client_secret", "scope", "resource", "audience"):
                case.body.pop(name, None)
            if "token" in case.body:
                case.body["token"] = real_token(conformance_shim, conformance_partner)
        response = case.call_and_validate(
            base_url=conformance_shim.base_url,
            headers={"authorization": basic_header(conformance_partner)},
            checks=CHECKS,
        )
        statuses.append(response.status_code)
        if path == "/oauth2/introspection" and response.status_code == 200:
            active.append(response.json()["active"])

    assert run_generated(openapi_schema, method, path, mode, call) > 0
    if mode is GenerationMode.POSITIVE:
        # The success paths were checked too, not only error responses.
        assert 200 in statuses, statuses
        if path == "/oauth2/introspection":
            assert True in active, active


def test_the_served_document_is_the_one_tested(conformance_shim: Shim) -> None:
    # schemathesis tests only what the document names: an endpoint missing from
    # it would go untested here, silently.
    response = httpx.get(f"{conformance_shim.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document == openapi_document(conformance_shim.issuer)
    assert document["servers"] == [{"url": conformance_shim.issuer}]
    assert set(document["paths"]) == {
        "/oauth2/token",
        "/oauth2/introspection",
        "/oauth2/revoke",
        "/oauth2/jwks",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/openapi.json",
    }


def break_document(document: dict[str, Any], check: str) -> str:
    """Make ``document`` wrong about ``GET /healthz`` or ``GET /oauth2/jwks`` in a way
    only ``check`` notices; return the path of the operation it is wrong about."""
    if check == "content_type_conformance":
        responses = document["paths"]["/healthz"]["get"]["responses"]
        responses["200"]["content"] = {"application/json": {"schema": {"type": "string"}}}
        return "/healthz"
    ok = document["paths"]["/oauth2/jwks"]["get"]["responses"]["200"]
    if check == "response_schema_conformance":
        document["components"]["schemas"]["Jwks"]["required"].append("x5c")
    elif check == "status_code_conformance":
        document["paths"]["/oauth2/jwks"]["get"]["responses"] = {"204": ok}
    elif check == "response_headers_conformance":
        ok["headers"] = {"X-Never-Sent": {"required": True, "schema": {"type": "string"}}}
    return "/oauth2/jwks"


@pytest.mark.parametrize("check", CHECKS[1:], ids=lambda check: check.__name__)
def test_each_check_fails_on_a_response_the_document_does_not_describe(
    conformance_shim: Shim, check: CheckFunction
) -> None:
    # The conformance tests above pass only if these checks can fail against this
    # very server: here the document is wrong instead of the server, on purpose.
    # (not_a_server_error is left out: it needs a 5xx, i.e. a broken server.)
    document = openapi_document(conformance_shim.issuer)
    path = break_document(document, check.__name__)
    operation = schemathesis.openapi.from_dict(document)[path]["GET"]
    case = operation.Case()
    # The server answers as always; only the document changed.
    assert case.call(base_url=conformance_shim.base_url).status_code == 200
    with pytest.raises(BaseExceptionGroup) as raised:
        case.call_and_validate(base_url=conformance_shim.base_url, checks=[check])
    (failure,) = raised.value.exceptions  # schemathesis's check failures are AssertionErrors
    assert isinstance(failure, AssertionError), failure


def test_the_document_never_puts_a_client_secret_in_the_url(conformance_shim: Shim) -> None:
    # RFC 6749 section 2.3.1: credentials MUST NOT be included in the request URI;
    # a client generated from the document must not be told to put them there.
    document = httpx.get(f"{conformance_shim.base_url}/openapi.json", timeout=10).json()
    schemes = document["components"]["securitySchemes"]
    in_url = {name for name, scheme in schemes.items() if scheme.get("in") in {"query", "path"}}
    assert in_url == set(), f"security schemes carried in the URL: {sorted(in_url)}"
