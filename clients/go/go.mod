module github.com/m2mauth/m2mauth/clients/go

go 1.19

// The versions the tests build against: Debian bookworm's packages (see
// README.md). Newer releases of each work too.
require (
	google.golang.org/genproto v0.0.0-20200413115906-b5235f65be36
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
	gopkg.in/square/go-jose.v2 v2.6.0
)
