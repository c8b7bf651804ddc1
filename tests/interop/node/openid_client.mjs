// openid-client v6 against the shim: RFC 8414 discovery, the client credentials
// grant (RFC 6749 section 4.4) and token introspection (RFC 7662).
//
// stdin:  {issuer, client_id, client_secret, auth: "client_secret_basic" | "client_secret_post",
//          scope, wrong_secret}
// stdout: {server, requests, token, introspection, wrong_secret_error}
import * as client from 'openid-client';

import { describeError, readInput } from './common.mjs';

const input = await readInput();

function authFor(secret) {
  if (input.auth === 'client_secret_basic') return client.ClientSecretBasic(secret);
  if (input.auth === 'client_secret_post') return client.ClientSecretPost(secret);
  throw new Error(`unknown auth method ${input.auth}`);
}

async function configure(secret) {
  // discovery() fetches OpenID Connect discovery by default; this server is a
  // plain OAuth 2.0 authorization server, so ask for RFC 8414 metadata. The
  // test server is http:// on loopback, which openid-client refuses unless told.
  return client.discovery(new URL(input.issuer), input.client_id, undefined, authFor(secret), {
    algorithm: 'oauth2',
    execute: [client.allowInsecureRequests],
  });
}

// Record what openid-client puts on the wire, so the test can check the client
// authentication method really used.
function recording(config, log) {
  config[client.customFetch] = (url, options) => {
    log.push({
      url,
      method: options.method,
      headers: options.headers,
      body: typeof options.body === 'string' ? options.body : String(options.body ?? ''),
    });
    return fetch(url, options);
  };
  return config;
}

const requests = [];
const config = recording(await configure(input.client_secret), requests);
const parameters = input.scope ? { scope: input.scope } : {};
const tokens = await client.clientCredentialsGrant(config, parameters);
const introspection = await client.tokenIntrospection(config, tokens.access_token);

let wrongSecretError = null;
if (input.wrong_secret) {
  try {
    await client.clientCredentialsGrant(await configure(input.wrong_secret), parameters);
  } catch (err) {
    wrongSecretError = await describeError(err);
  }
}

process.stdout.write(
  JSON.stringify({
    server: config.serverMetadata(),
    requests,
    token: { ...tokens, expires_in_helper: tokens.expiresIn() },
    introspection,
    wrong_secret_error: wrongSecretError,
  }),
);
