"""The domain: organizations, applications, secrets, keys, tokens, audit.

Plain Python: no gRPC, no HTTP, no SQL. Transports call into it; it talks to
persistence only through the Protocols in :mod:`m2mauth.core.interfaces`.
"""
