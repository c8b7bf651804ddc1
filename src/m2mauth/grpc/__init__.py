"""The gRPC transport: servicers translate proto <-> core calls and map errors."""
