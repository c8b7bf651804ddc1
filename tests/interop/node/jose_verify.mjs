// jose verifies access tokens as a resource server does (RFC 9068 section 4):
// the signature with a key from the remote JWKS, typ "at+jwt", issuer, audience.
//
// stdin:  {jwks_uri, issuer, audience, algorithms,
//          cases: [{label, token, issuer?, audience?}]}
// stdout: {<label>: {ok: true, header, payload} | {ok: false, error: {...}}}
//
// One JWKS per run, so every run starts from what the server publishes now.
import { createRemoteJWKSet, jwtVerify } from 'jose';

import { describeError, readInput } from './common.mjs';

const input = await readInput();
const jwks = createRemoteJWKSet(new URL(input.jwks_uri));

const results = {};
for (const c of input.cases) {
  try {
    const { payload, protectedHeader } = await jwtVerify(c.token, jwks, {
      typ: 'at+jwt',
      issuer: c.issuer ?? input.issuer,
      audience: c.audience ?? input.audience,
      algorithms: input.algorithms,
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
    });
    results[c.label] = { ok: true, header: protectedHeader, payload };
  } catch (err) {
    results[c.label] = { ok: false, error: await describeError(err) };
  }
}
process.stdout.write(JSON.stringify(results));
