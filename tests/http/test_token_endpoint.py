"""POST /oauth2/token: RFC 6749 section 4.4 over HTTP, and every way to get it wrong."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import httpx
import jwt
import pytest

from m2mauth.core.applications import ApplicationFields
from tests.http.conftest import ENV, Partner, Shim

FORM = {"content-type": "application/x-www-form-urlencoded"}


def basic(client_id: str, secret: str, *, encode: bool = True) -> dict[str, str]:
    """RFC 6749 section 2.3.1: id and secret are form-urlencoded, then base64."""
    if encode:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error_description"], body
    assert "Traceback" not in response.text
    return response.status_code, body["error"]


def test_client_secret_basic_issues_an_rfc_9068_token(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "invoices:read"},
        headers=basic(partner.client_id, partner.client_secret),
    )
    assert response.status_code == 200, response.text
    # RFC 6749 section 5.1.
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "invoices:read"
    assert 0 < body["expires_in"] <= 3600
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == shim.issuer
    assert claims["org_id"] == partner.org_id
    assert claims["client_id"] == partner.client_id
    assert claims["scope"] == "invoices:read"


def test_client_secret_post_issues_a_token(http: httpx.Client, partner: Partner) -> None:
    response = http.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    # No scope asked: all the application's scopes (RFC 6749 section 3.3 default).
    assert set(response.json()["scope"].split()) == {"invoices:read", "invoices:write"}


def test_basic_credentials_are_form_urldecoded(http: httpx.Client, partner: Partner) -> None:
    # Percent-encode every character: a server that skips the decoding fails.
    encoded_id = "".join(f"%{b:02X}" for b in partner.client_id.encode())
    raw = base64.b64encode(f"{encoded_id}:{quote_plus(partner.client_secret)}".encode()).decode()
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": f"Basic {raw}"},
    )
    assert response.status_code == 200, response.text


def test_body_client_id_matching_basic_is_accepted(http: httpx.Client, partner: Partner) -> None:
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": partner.client_id},
        headers=basic(partner.client_id, partner.client_secret),
    )
    assert response.status_code == 200, response.text


def test_resource_and_audience_select_the_audience(shim: Shim, http: httpx.Client) -> None:
    partner = shim.partner(audiences=("https://billing.example", "https://ledger.example"))
    for name in ("resource", "audience"):
        response = http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", name: "https://ledger.example"},
            headers=basic(partner.client_id, partner.client_secret),
        )
        assert response.status_code == 200, response.text
        claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert claims["aud"] == "https://ledger.example"


@pytest.mark.parametrize(
    ("secret_of", "auth"),
    [
        (lambda p: p.client_secret + "x", "basic"),
        (lambda p: "", "post"),
        (lambda p: p.client_secret[:-1], "post"),
    ],
)
def test_wrong_credentials_are_invalid_client(
    http: httpx.Client, partner: Partner, secret_of: object, auth: str
) -> None:
    secret = secret_of(partner)  # type: ignore[operator]
    if auth == "basic":
        response = http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers=basic(partner.client_id, secret),
        )
    else:
        response = http.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": partner.client_id,
                "client_secret": secret,
            },
        )
    assert error_of(response) == (401, "invalid_client")
    assert response.headers["cache-control"] == "no-store"
    # RFC 6749 section 5.2: WWW-Authenticate matching the scheme the client used.
    if auth == "basic":
        assert response.headers["www-authenticate"] == 'Basic realm="m2mauth"'
    else:
        assert "www-authenticate" not in response.headers


def test_unknown_client_is_invalid_client(http: httpx.Client) -> None:
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=basic("client_01HZZZZZZZZZZZZZZZZZZZZZZZ", "m2m_cs_nope"),
    )
    assert error_of(response) == (401, "invalid_client")


def test_grant_and_scope_and_target_errors(shim: Shim, http: httpx.Client) -> None:
    partner = shim.partner(scopes=("a",), audiences=("https://one.example",))
    auth = basic(partner.client_id, partner.client_secret)
    cases = [
        ({"grant_type": "password"}, (400, "unsupported_grant_type")),
        ({"grant_type": "authorization_code"}, (400, "unsupported_grant_type")),
        ({}, (400, "invalid_request")),  # grant_type missing
        ({"grant_type": "client_credentials", "scope": "b"}, (400, "invalid_scope")),
        (
            {"grant_type": "client_credentials", "resource": "https://two.example"},
            (400, "invalid_target"),
        ),
        (
            {
                "grant_type": "client_credentials",
                "resource": "https://one.example",
                "audience": "https://other.example",
            },
            (400, "invalid_request"),
        ),
    ]
    for data, expected in cases:
        assert error_of(http.post("/oauth2/token", data=data, headers=auth)) == expected, data


def test_repeated_parameter_is_invalid_request(http: httpx.Client, partner: Partner) -> None:
    body = "grant_type=client_credentials&scope=invoices:read&scope=invoices:write"
    response = http.post(
        "/oauth2/token",
        content=body,
        headers={**FORM, **basic(partner.client_id, partner.client_secret)},
    )
    assert error_of(response) == (400, "invalid_request")
    assert "scope" in response.json()["error_description"]


def test_empty_parameter_counts_as_omitted(http: httpx.Client, partner: Partner) -> None:
    # RFC 6749 section 3.1: "sent without a value MUST be treated as if omitted".
    response = http.post(
        "/oauth2/token",
        content="grant_type=client_credentials&scope=",
        headers={**FORM, **basic(partner.client_id, partner.client_secret)},
    )
    assert response.status_code == 200, response.text


def test_two_authentication_methods_are_invalid_request(
    http: httpx.Client, partner: Partner
) -> None:
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_secret": partner.client_secret},
        headers=basic(partner.client_id, partner.client_secret),
    )
    assert error_of(response) == (400, "invalid_request")


def test_body_client_id_differing_from_basic_is_invalid_request(
    shim: Shim, http: httpx.Client, partner: Partner
) -> None:
    other = shim.partner()
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": other.client_id},
        headers=basic(partner.client_id, partner.client_secret),
    )
    assert error_of(response) == (400, "invalid_request")


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":secret-without-id").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Digest username=x",
    ],
)
def test_malformed_authorization_is_invalid_request(http: httpx.Client, header: str) -> None:
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": header},
    )
    assert error_of(response) == (400, "invalid_request")


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x", None]
)
def test_wrong_content_type_is_invalid_request(
    http: httpx.Client, partner: Partner, content_type: str | None
) -> None:
    headers = basic(partner.client_id, partner.client_secret)
    if content_type:
        headers["content-type"] = content_type
    response = http.post("/oauth2/token", content=b"grant_type=client_credentials", headers=headers)
    assert error_of(response) == (400, "invalid_request")


def test_content_type_with_charset_is_accepted(http: httpx.Client, partner: Partner) -> None:
    response = http.post(
        "/oauth2/token",
        content=b"grant_type=client_credentials",
        headers={
            "content-type": "application/x-www-form-urlencoded; charset=UTF-8",
            **basic(partner.client_id, partner.client_secret),
        },
    )
    assert response.status_code == 200, response.text


def test_oversized_body_is_refused(http: httpx.Client, partner: Partner) -> None:
    big = "grant_type=client_credentials&pad=" + "x" * (65 * 1024)
    response = http.post(
        "/oauth2/token",
        content=big,
        headers={**FORM, **basic(partner.client_id, partner.client_secret)},
    )
    assert error_of(response) == (413, "invalid_request")

    # The same without a Content-Length (chunked): still bounded while reading.
    def chunks() -> object:
        yield b"grant_type=client_credentials&pad="
        for _ in range(70):
            yield b"x" * 1024

    response = http.post(
        "/oauth2/token",
        content=chunks(),  # type: ignore[arg-type]
        headers={**FORM, **basic(partner.client_id, partner.client_secret)},
    )
    assert error_of(response) == (413, "invalid_request")


def test_invalid_utf8_body_is_invalid_request(http: httpx.Client) -> None:
    response = http.post("/oauth2/token", content=b"grant_type=\xff\xfe", headers=FORM)
    assert error_of(response) == (400, "invalid_request")


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspection", "/oauth2/revoke"])
def test_get_on_a_post_endpoint_is_405_with_allow(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert error_of(response) == (405, "invalid_request")
    assert response.headers["allow"] == "POST"


def test_unknown_path_is_a_json_404(http: httpx.Client) -> None:
    response = http.get("/oauth2/authorize")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_disabled_application_cannot_get_tokens(shim: Shim, http: httpx.Client) -> None:
    partner = shim.partner()
    shim.container.applications.update(
        ENV, partner.app_id, ("enabled",), ApplicationFields(name="svc", enabled=False)
    )
    shim.container.tokens.clients.invalidate()
    response = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=basic(partner.client_id, partner.client_secret),
    )
    assert error_of(response) == (401, "invalid_client")
