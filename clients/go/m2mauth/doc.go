// Package m2mauth is the thin, hand-written part of the Go client for
// m2mauth's gRPC API: admin-key credentials and error decoding. The generated
// messages and stubs are in package m2mauthv1
// (github.com/m2mauth/m2mauth/clients/go/m2mauth/v1), generated from protos/
// by `make gen` and never edited.
package m2mauth
