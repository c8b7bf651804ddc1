// Shared by the scripts: read the JSON request pytest writes to stdin (secrets stay
// off the command line) and describe errors as plain JSON.
export async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

// The parts of an error a test asserts on: jose and oauth4webapi set `code`;
// openid-client's ResponseBodyError carries the RFC 6749 section 5.2 `error`,
// its WWWAuthenticateChallengeError the parsed challenges (and an unread body).
export async function describeError(err) {
  // ResponseBodyError keeps the parsed body as its cause.
  let body = err?.code === 'OAUTH_RESPONSE_BODY_ERROR' ? (err.cause ?? null) : null;
  if (body === null && err?.response && !err.response.bodyUsed) {
    try {
      body = await err.response.json();
    } catch {
      body = null;
    }
  }
  return {
    name: err?.name ?? null,
    code: err?.code ?? null,
    message: err?.message ?? null,
    error: err?.error ?? null,
    status: err?.status ?? null,
    claim: err?.claim ?? null,
    challenges: Array.isArray(err?.cause) ? err.cause : null,
    body,
  };
}
