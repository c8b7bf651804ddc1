package m2mauth

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	m2mauthv1 "github.com/m2mauth/m2mauth/clients/go/m2mauth/v1"
)

func TestEveryReasonRoundTrips(t *testing.T) {
	for number, name := range m2mauthv1.ErrorReason_name {
		reason := m2mauthv1.ErrorReason(number)
		if reason == m2mauthv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		wire := WireReason(reason)
		if wire == name || ReasonFromWire(wire) != reason {
			t.Errorf("%s: wire %q maps back to %s", name, wire, ReasonFromWire(wire))
		}
	}
	if got := ReasonFromWire("SOMETHING_NEW"); got != m2mauthv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Errorf("an unknown reason maps to %s", got)
	}
}

func TestDecodeError(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "name is required").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_FIELD", Domain: Domain},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "organization.name", Description: "name is required"},
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	decoded, ok := DecodeError(st.Err())
	if !ok {
		t.Fatal("not decoded")
	}
	if decoded.Reason != m2mauthv1.ErrorReason_ERROR_REASON_INVALID_FIELD ||
		decoded.FieldViolations[0].GetField() != "organization.name" {
		t.Errorf("decoded %+v", decoded)
	}
	if _, ok := DecodeError(errors.New("connection refused")); ok {
		t.Error("a plain error decoded as an m2mauth error")
	}
	other, _ := status.New(codes.Internal, "x").WithDetails(&errdetails.ErrorInfo{Reason: "X", Domain: "other"})
	if _, ok := DecodeError(other.Err()); ok {
		t.Error("another domain's error decoded as an m2mauth error")
	}
}
