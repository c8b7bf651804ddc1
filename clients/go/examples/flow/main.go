// Command flow runs the whole m2mauth flow over gRPC: create an organization,
// an application and a secret with an admin key; issue a token; verify it
// against GetJwks with go-jose; introspect; revoke; and decode failures.
//
//	M2MAUTH_GRPC_ADDR=127.0.0.1:50051 M2MAUTH_ADMIN_KEY=... \
//	M2MAUTH_ISSUER=http://127.0.0.1:8080 go run ./examples/flow
//
// It prints one JSON object describing what happened (tests/interop reads it).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	jose "gopkg.in/square/go-jose.v2"
	"gopkg.in/square/go-jose.v2/jwt"

	"github.com/m2mauth/m2mauth/clients/go/m2mauth"
	m2mauthv1 "github.com/m2mauth/m2mauth/clients/go/m2mauth/v1"
)

func setting(name string) string {
	value := os.Getenv(name)
	if value == "" {
		log.Fatalf("%s is not set", name)
	}
	return value
}

type failure struct {
	Code       string   `json:"code"`
	Reason     string   `json:"reason"`
	WireReason string   `json:"wire_reason"`
	Fields     []string `json:"fields"`
}

func describe(err error) failure {
	decoded, ok := m2mauth.DecodeError(err)
	if !ok {
		log.Fatalf("not an m2mauth error: %v", err)
	}
	fields := []string{}
	for _, v := range decoded.FieldViolations {
		fields = append(fields, v.GetField())
	}
	return failure{
		Code:       decoded.Code.String(),
		Reason:     m2mauth.WireReason(decoded.Reason),
		WireReason: decoded.WireReason,
		Fields:     fields,
	}
}

func main() {
	issuer := setting("M2MAUTH_ISSUER")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Plaintext on loopback only; use grpc.WithTransportCredentials and
	// m2mauth.AdminKey elsewhere.
	conn, err := grpc.DialContext(ctx, setting("M2MAUTH_GRPC_ADDR"), grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	orgs := m2mauthv1.NewOrganizationServiceClient(conn)
	apps := m2mauthv1.NewApplicationServiceClient(conn)
	tokens := m2mauthv1.NewTokenServiceClient(conn)
	admin := m2mauth.WithAdminKey(ctx, setting("M2MAUTH_ADMIN_KEY"))

	// 1. Management, with the admin key.
	org, err := orgs.CreateOrganization(admin, &m2mauthv1.CreateOrganizationRequest{
		Organization: &m2mauthv1.Organization{Name: "Example Partner (Go)"},
	})
	if err != nil {
		log.Fatal(err)
	}
	organization := org.GetOrganization()
	app, err := apps.CreateApplication(admin, &m2mauthv1.CreateApplicationRequest{
		Application: &m2mauthv1.Application{
			OrganizationId: organization.GetId(),
			Name:           "go-example",
			Scopes:         []string{"invoices:read"},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	clientID := app.GetApplication().GetClientId()
	created, err := apps.CreateClientSecret(admin, &m2mauthv1.CreateClientSecretRequest{
		ApplicationId: app.GetApplication().GetId(),
	})
	if err != nil {
		log.Fatal(err)
	}
	secret := created.GetSecret()

	// 2. The client credentials grant (RFC 6749 section 4.4); no admin key.
	issued, err := tokens.IssueToken(ctx, &m2mauthv1.IssueTokenRequest{
		GrantType:    "client_credentials",
		ClientId:     clientID,
		ClientSecret: secret,
		Scope:        "invoices:read",
	})
	if err != nil {
		log.Fatal(err)
	}

	// 3. Verify as a resource server does (RFC 9068 section 4) with keys from
	// GetJwks: the proto Jwk's JSON form (proto names) is a JWK.
	jwksResponse, err := tokens.GetJwks(ctx, &m2mauthv1.GetJwksRequest{})
	if err != nil {
		log.Fatal(err)
	}
	jwksJSON, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(jwksResponse)
	if err != nil {
		log.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal(jwksJSON, &jwks); err != nil {
		log.Fatal(err)
	}
	header, claims, err := verify(issued.GetAccessToken(), jwks, issuer)
	if err != nil {
		log.Fatal(err)
	}

	// 4. Introspection (RFC 7662), then 5. revocation (RFC 7009), with the
	// application's own credentials.
	before, err := tokens.Introspect(ctx, &m2mauthv1.IntrospectRequest{
		Token: issued.GetAccessToken(), ClientId: clientID, ClientSecret: secret,
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tokens.RevokeToken(ctx, &m2mauthv1.RevokeTokenRequest{
		Token: issued.GetAccessToken(), ClientId: clientID, ClientSecret: secret,
	}); err != nil {
		log.Fatal(err)
	}
	after, err := tokens.Introspect(ctx, &m2mauthv1.IntrospectRequest{
		Token: issued.GetAccessToken(), ClientId: clientID, ClientSecret: secret,
	})
	if err != nil {
		log.Fatal(err)
	}

	// 6. Failures, decoded: a wrong secret, and a field the server refuses.
	_, wrongSecret := tokens.IssueToken(ctx, &m2mauthv1.IssueTokenRequest{
		GrantType: "client_credentials", ClientId: clientID, ClientSecret: secret + "x",
	})
	_, badField := orgs.CreateOrganization(admin, &m2mauthv1.CreateOrganizationRequest{
		Organization: &m2mauthv1.Organization{Name: ""},
	})
	if wrongSecret == nil || badField == nil {
		log.Fatal(errors.New("a call that must fail succeeded"))
	}

	out := map[string]interface{}{
		"organization_id": organization.GetId(),
		// google.protobuf.Timestamp -> time.Time.
		"organization_created": organization.GetCreateTime().AsTime().Format("2006-01-02T15:04:05.000Z07:00"),
		"client_id":            clientID,
		"token_type":           issued.GetTokenType(),
		"expires_in":           issued.GetExpiresIn(), // int64
		"header":               header,
		"claims":               claims,
		"introspection_before": map[string]interface{}{
			"active": before.GetActive(), "org_id": before.GetOrgId(), "jti": before.GetJti(),
		},
		"introspection_after": map[string]interface{}{"active": after.GetActive()},
		"wrong_secret":        describe(wrongSecret),
		"bad_field":           describe(badField),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}

// verify checks the signature against the JWKS, typ "at+jwt", the algorithm,
// issuer, audience and expiry, and returns the header and claims.
func verify(raw string, jwks jose.JSONWebKeySet, issuer string) (map[string]interface{}, map[string]interface{}, error) {
	token, err := jwt.ParseSigned(raw)
	if err != nil {
		return nil, nil, err
	}
	if len(token.Headers) != 1 {
		return nil, nil, errors.New("expected one signature")
	}
	h := token.Headers[0]
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		return nil, nil, fmt.Errorf("typ is %v, not at+jwt", typ)
	}
	switch jose.SignatureAlgorithm(h.Algorithm) {
	case jose.RS256, jose.ES256, jose.EdDSA:
	default:
		return nil, nil, fmt.Errorf("unexpected alg %s", h.Algorithm)
	}
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 {
		return nil, nil, fmt.Errorf("no key %q in the JWKS", h.KeyID)
	}
	var registered jwt.Claims
	claims := map[string]interface{}{}
	if err := token.Claims(keys[0].Key, &registered, &claims); err != nil {
		return nil, nil, err
	}
	expected := jwt.Expected{Issuer: issuer, Audience: jwt.Audience{issuer}, Time: time.Now()}
	if err := registered.ValidateWithLeeway(expected, 30*time.Second); err != nil {
		return nil, nil, err
	}
	header := map[string]interface{}{"alg": h.Algorithm, "kid": h.KeyID, "typ": h.ExtraHeaders[jose.HeaderType]}
	return header, claims, nil
}
