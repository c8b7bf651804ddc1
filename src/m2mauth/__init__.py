"""m2mauth: an OAuth 2.0 authorization server for machine-to-machine access."""

__version__ = "0.1.0"
