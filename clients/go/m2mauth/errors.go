package m2mauth

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	m2mauthv1 "github.com/m2mauth/m2mauth/clients/go/m2mauth/v1"
)

// Domain is the google.rpc.ErrorInfo domain of every m2mauth error.
const Domain = "m2mauth"

const reasonPrefix = "ERROR_REASON_"

// Error is an m2mauth error as errors.proto describes it: a gRPC status whose
// google.rpc.ErrorInfo names the reason, plus the fields to blame, if any.
// Branch on Reason, never on Message.
type Error struct {
	Code    codes.Code
	Message string
	// Reason is ERROR_REASON_UNSPECIFIED when the server is newer than this client.
	Reason m2mauthv1.ErrorReason
	// WireReason is the reason exactly as sent, e.g. "INVALID_CLIENT".
	WireReason      string
	Metadata        map[string]string
	FieldViolations []*errdetails.BadRequest_FieldViolation
}

func (e *Error) Error() string {
	return fmt.Sprintf("m2mauth: %s (%s): %s", e.Code, e.WireReason, e.Message)
}

// ReasonFromWire maps an ErrorInfo reason ("INVALID_CLIENT") to its enum value
// (ERROR_REASON_INVALID_CLIENT), by name, as errors.proto says.
func ReasonFromWire(reason string) m2mauthv1.ErrorReason {
	return m2mauthv1.ErrorReason(m2mauthv1.ErrorReason_value[reasonPrefix+reason])
}

// WireReason is the inverse of ReasonFromWire.
func WireReason(reason m2mauthv1.ErrorReason) string {
	return strings.TrimPrefix(reason.String(), reasonPrefix)
}

// DecodeError returns the m2mauth error carried by err (as returned by a
// generated client), or false when it carries none: a transport failure, or
// a status from something other than m2mauth.
func DecodeError(err error) (*Error, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return nil, false
	}
	decoded := &Error{Code: st.Code(), Message: st.Message()}
	found := false
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == Domain {
				found = true
				decoded.WireReason = d.GetReason()
				decoded.Reason = ReasonFromWire(d.GetReason())
				decoded.Metadata = d.GetMetadata()
			}
		case *errdetails.BadRequest:
			decoded.FieldViolations = append(decoded.FieldViolations, d.GetFieldViolations()...)
		}
	}
	if !found {
		return nil, false
	}
	return decoded, true
}
