// A real OpenID Provider (panva/oidc-provider) for the end-to-end tests.
//
// Usage: node server.mjs CONFIG.json   (prints "listening <url>" when ready)
// CONFIG: {port, keys: [private JWKs], clients: [...], tls: {cert, key} | null,
//          accounts: {id: {claims}}}
// Test-only extras, never in a real IdP:
//   POST /__admin/keys   {"keys": [...]}  rebuild the provider with a new key list
//                                          (stage: append, activate: move first, retire: drop)
//   POST /__admin/delay  {"ms": N}         answer every request N ms late (a slow IdP)
//   GET  /__admin/stats                    {"jwks": n, "discovery": n} fetch counters
//   grant urn:openfaas-iam:test:mint       an id_token with arbitrary claims, for
//                                          GitHub-, GitLab- and Kubernetes-shaped tokens
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const scheme = config.tls ? 'https' : 'http';
const issuer = `${scheme}://127.0.0.1:${config.port}`;
const stats = { jwks: 0, discovery: 0 };
let delayMs = 0;
let keys = config.keys;
let provider;

function build() {
  const p = new Provider(issuer, {
    clients: config.clients,
    jwks: { keys },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.defaultResource || 'https://gateway.test',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => ({
          audience: resource,
          scope: 'openid deploy',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      groups: ['groups'],
    },
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, ...((config.accounts || {})[id] || {}) }),
    }),
    pkce: { required: () => true },
    ttl: { IdToken: 600, AccessToken: 600, ClientCredentials: 600 },
    cookies: { keys: ['test-cookie-key'] },
  });
  p.proxy = false;
  p.registerGrantType(
    'urn:openfaas-iam:test:mint',
    async (ctx) => {
      const claims = JSON.parse(ctx.oidc.params.claims || '{}');
      const token = new p.IdToken({ sub: claims.sub || 'test-subject' }, { ctx, client: ctx.oidc.client });
      token.scope = 'openid';
      for (const [k, v] of Object.entries(claims)) {
        if (!['iss', 'aud', 'exp', 'iat'].includes(k)) token.set(k, v);
      }
      const ttl = Number(ctx.oidc.params.ttl || 600);
      const idToken = await token.issue({ use: 'idtoken', expiresAt: Math.floor(Date.now() / 1000) + ttl });
      ctx.body = { id_token: idToken, token_type: 'Bearer', expires_in: ttl };
    },
    ['claims', 'ttl'],
  );
  return p;
}

provider = build();

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

async function handler(req, res) {
  if (req.url.startsWith('/__admin/')) {
    if (req.url === '/__admin/keys' && req.method === 'POST') {
      keys = (await readJson(req)).keys;
      provider = build();
    } else if (req.url === '/__admin/delay' && req.method === 'POST') {
      delayMs = (await readJson(req)).ms;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  if (req.url.startsWith('/jwks')) stats.jwks += 1;
  if (req.url.startsWith('/.well-known/openid-configuration')) stats.discovery += 1;
  if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  provider.callback()(req, res);
}

const server = config.tls
  ? https.createServer({ cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) }, handler)
  : http.createServer(handler);
server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
