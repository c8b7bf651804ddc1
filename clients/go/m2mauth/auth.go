package m2mauth

import (
	"context"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// WithAdminKey returns a context whose outgoing calls carry
// `authorization: Bearer <key>`, as every management call, and Introspect or
// RevokeToken on behalf of any application, need.
func WithAdminKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

// AdminKey returns per-RPC credentials that send the admin key with every call
// of a connection: grpc.Dial(addr, grpc.WithTransportCredentials(tls),
// grpc.WithPerRPCCredentials(m2mauth.AdminKey(key))). gRPC refuses to send
// them over a plaintext connection; use WithAdminKey there (loopback only).
func AdminKey(key string) credentials.PerRPCCredentials {
	return adminKey(key)
}

type adminKey string

func (k adminKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(k)}, nil
}

func (adminKey) RequireTransportSecurity() bool { return true }
