"""Support for the client commands of ``m2mauth``: options, channel, output, errors.

``m2mauth.cli`` imports only :mod:`options` and :mod:`failure` eagerly (click
and the standard library); the modules that import grpc and protobuf are
imported inside the command callbacks, so ``m2mauth --help`` stays fast.
"""
