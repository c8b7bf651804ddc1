"""The OAuth 2.0 HTTP shim for external partners.

It parses form posts and HTTP authentication into the same TokenService
request messages a gRPC caller sends, calls the service (in-process or over
gRPC), and renders replies and RFC 6749 section 5.2 errors. It owns no OAuth
rule: grant, scope, audience and credential decisions stay in the core.
"""
