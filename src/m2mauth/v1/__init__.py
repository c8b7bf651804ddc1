"""Generated from protos/m2mauth/v1 by `make gen`. Never edit by hand."""
