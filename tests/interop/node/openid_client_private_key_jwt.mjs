// openid-client v6 with its own private_key_jwt (RFC 7523 section 2.2): RFC 8414
// discovery, then two client credentials grants, each authenticated with a client
// assertion openid-client signs itself (the test only hands it the private key).
//
// stdin:  {issuer, client_id, private_key_pem, alg: "RS256" | "ES256", kid, scope}
// stdout: {server, requests, tokens}
import * as client from 'openid-client';
import { importPKCS8 } from 'jose';

import { readInput } from './common.mjs';

const input = await readInput();
const key = await importPKCS8(input.private_key_pem, input.alg);

// The test server is http:// on loopback, which openid-client refuses unless told.
const config = await client.discovery(
  new URL(input.issuer),
  input.client_id,
  undefined,
  client.PrivateKeyJwt({ key, kid: input.kid }),
  { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
);

// Record what goes on the wire, so the test sees the assertion openid-client made.
const requests = [];
config[client.customFetch] = (url, options) => {
  requests.push({
    url,
    headers: options.headers,
    body: typeof options.body === 'string' ? options.body : String(options.body ?? ''),
  });
  return fetch(url, options);
};

const parameters = input.scope ? { scope: input.scope } : {};
const tokens = [];
for (let i = 0; i < 2; i++) {
  tokens.push(await client.clientCredentialsGrant(config, parameters));
}

process.stdout.write(JSON.stringify({ server: config.serverMetadata(), requests, tokens }));
