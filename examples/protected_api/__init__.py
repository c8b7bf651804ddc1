"""An API protected by m2mauth tokens: gRPC and HTTP over per-organization data."""
