// The baseline of `trustgate-load oauth-vs-node` (scripts/oauth-vs-node.sh): node
// `oidc-provider` issuing client_credentials access tokens as ES256-signed JWTs (RFC 9068), set
// up the way a production deployment would be for this grant and nothing else:
// - one confidential client (`client_secret_basic`), registered statically;
// - the resource indicators feature with one resource server (the client's default resource),
//   whose access tokens are JWTs signed with the provider's P-256 key (`accessTokenFormat: 'jwt'`);
// - the in-memory adapter (oidc-provider's default), no dev interactions, no logging
//   (oidc-provider logs only through `debug`, which is off unless DEBUG is set).
//
// Environment: NODE_OIDC_CLIENT_ID, NODE_OIDC_CLIENT_SECRET (required), NODE_OIDC_LISTEN
// (default 127.0.0.1:0). Prints `listening on http://HOST:PORT` once it accepts connections.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const clientId = process.env.NODE_OIDC_CLIENT_ID;
const clientSecret = process.env.NODE_OIDC_CLIENT_SECRET;
if (!clientId || !clientSecret) {
  console.error('NODE_OIDC_CLIENT_ID and NODE_OIDC_CLIENT_SECRET are required');
  process.exit(2);
}
const [host, port] = (process.env.NODE_OIDC_LISTEN ?? '127.0.0.1:0').split(':');

// The resource server the client's tokens are for (trustgate's benchmark client has the same
// audience and scope).
const RESOURCE = 'https://api.bench.example';
const SCOPE = 'bench:read';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

// The issuer names the port, known only once listening.
let handle = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handle(req, res));
server.keepAliveTimeout = 60_000;
server.listen(Number(port), host, () => {
  const { address, port: bound } = server.address();
  const issuer = `http://${address}:${bound}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: SCOPE,
      },
    ],
    jwks: { keys: [signingKey] },
    scopes: [SCOPE],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== RESOURCE) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: SCOPE,
            audience: RESOURCE,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
  });
  // Errors are answered to the client; nothing is printed per request.
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  handle = provider.callback();
  console.log(`listening on ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
