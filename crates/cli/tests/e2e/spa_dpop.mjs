// A browser single-page app on another origin signs in with the authorization code flow, PKCE
// and DPoP (RFC 9449), entirely from the page: oauth4webapi (the library under openid-client)
// runs in headless Chromium, keeps a non-extractable P-256 key in IndexedDB across the
// redirect, binds the code with `dpop_jkt`, answers the server's `use_dpop_nonce`, calls
// userinfo with the DPoP scheme and refreshes with the key. Every call to trustgate is
// cross-origin, so each one goes through trustgate's CORS answers. Run by
// crates/cli/tests/it/browser.rs:
//   node spa_dpop.mjs BASE USERNAME PASSWORD ARTIFACT_DIR   (TRUSTGATE_ADMIN_TOKEN in the env)
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { args, check, launch, screenshot } from './lib.mjs';

const { base, username, password, artifacts } = args();
const adminToken = process.env.TRUSTGATE_ADMIN_TOKEN;
if (!adminToken) throw new Error('TRUSTGATE_ADMIN_TOKEN is required');
const library = readFileSync(createRequire(import.meta.url).resolve('oauth4webapi'));

// The page's code: runs in the browser, reports into #result.
const app = String.raw`
import * as oauth from '/oauth4webapi.js';
const out = (value) => { document.querySelector('#result').textContent = JSON.stringify(value); };
const insecure = { [oauth.allowInsecureRequests]: true };
const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const store = () => new Promise((resolve, reject) => {
  const open = indexedDB.open('spa', 1);
  open.onupgradeneeded = () => open.result.createObjectStore('kv');
  open.onsuccess = () => resolve(open.result);
  open.onerror = () => reject(open.error);
});
const put = async (key, value) => {
  const db = await store();
  await new Promise((resolve, reject) => {
    const tx = db.transaction('kv', 'readwrite');
    tx.objectStore('kv').put(value, key);
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
};
const get = async (key) => {
  const db = await store();
  return new Promise((resolve, reject) => {
    const read = db.transaction('kv').objectStore('kv').get(key);
    read.onsuccess = () => resolve(read.result);
    read.onerror = () => reject(read.error);
  });
};
// One retry when the server asks for its nonce (the handle keeps the nonce it was sent).
const withNonce = async (request, process) => {
  try {
    return { result: await process(await request()), retried: false };
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    return { result: await process(await request()), retried: true };
  }
};
try {
  const cfg = await (await fetch('/config.json')).json();
  const issuer = new URL(cfg.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));
  const client = { client_id: cfg.client_id };
  const here = new URL(location.href);
  if (here.pathname === '/') {
    const keyPair = await oauth.generateKeyPair('ES256');
    check(keyPair.privateKey.extractable === false, 'the private key never leaves WebCrypto');
    const jwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
    const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
    const jkt = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical))));
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    await put('flow', { keyPair, verifier, state, jkt });
    const url = new URL(as.authorization_endpoint);
    url.search = new URLSearchParams({
      client_id: client.client_id,
      redirect_uri: cfg.redirect_uri,
      response_type: 'code',
      scope: 'openid profile offline_access',
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      dpop_jkt: jkt,
    }).toString();
    location.assign(url.href);
  } else {
    const { keyPair, verifier, state, jkt } = await get('flow');
    const DPoP = oauth.DPoP(client, keyPair);
    const params = oauth.validateAuthResponse(as, client, here, state);
    const code = await withNonce(
      () => oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, cfg.redirect_uri, verifier, { DPoP, ...insecure }),
      (response) => oauth.processAuthorizationCodeResponse(as, client, response),
    );
    const tokens = code.result;
    const sub = oauth.getValidatedIdTokenClaims(tokens).sub;
    const payload = JSON.parse(atob(tokens.access_token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    const info = await oauth.processUserInfoResponse(as, client, sub,
      await oauth.userInfoRequest(as, client, tokens.access_token, { DPoP, ...insecure }));
    const asBearer = await fetch(as.userinfo_endpoint, { headers: { authorization: 'Bearer ' + tokens.access_token } });
    const refreshed = await withNonce(
      () => oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token, { DPoP, ...insecure }),
      (response) => oauth.processRefreshTokenResponse(as, client, response),
    );
    let stolen = null;
    try {
      const thief = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
      await withNonce(
        () => oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshed.result.refresh_token, { DPoP: thief, ...insecure }),
        (response) => oauth.processRefreshTokenResponse(as, client, response),
      );
      stolen = 'accepted';
    } catch (err) {
      stolen = err.error ?? String(err);
    }
    out({
      ok: true,
      token_type: tokens.token_type,
      nonce_retry: code.retried,
      cnf_jkt: payload.cnf?.jkt,
      jkt,
      sub,
      userinfo_sub: info.sub,
      bearer_status: asBearer.status,
      refreshed_type: refreshed.result.token_type,
      refreshed_jkt: JSON.parse(atob(refreshed.result.access_token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).cnf?.jkt,
      stolen,
    });
  }
} catch (err) {
  out({ ok: false, error: String(err), code: err.error, cause: String(err.cause ?? '') });
}
function check(condition, message) { if (!condition) throw new Error(message); }
`;

// ---- the SPA's own origin (another port: another origin for the browser) ----
let config = null;
const spaServer = createServer((req, res) => {
  const path = new URL(req.url, 'http://spa').pathname;
  if (path === '/app.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(app);
  } else if (path === '/oauth4webapi.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(library);
  } else if (path === '/config.json') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(config));
  } else if (path === '/' || path === '/cb') {
    res.writeHead(200, { 'content-type': 'text/html' })
      .end('<!doctype html><title>SPA</title><pre id="result"></pre><script type="module" src="/app.js"></script>');
  } else {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => spaServer.listen(0, '127.0.0.1', resolve));
const spa = `http://127.0.0.1:${spaServer.address().port}`;
check(new URL(spa).origin !== new URL(base).origin, 'the SPA is on another origin');

const response = await fetch(`${base}/admin/v1/clients`, {
  method: 'POST',
  headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
  body: JSON.stringify({
    name: 'Browser SPA',
    redirect_uris: [`${spa}/cb`],
    grant_types: ['authorization_code', 'refresh_token'],
    scopes: ['openid', 'profile', 'offline_access'],
    auth_method: 'none',
    skip_consent: true,
  }),
});
const registered = await response.json();
check(response.ok, `register the SPA: ${response.status} ${JSON.stringify(registered)}`);
const discovery = await (await fetch(`${base}/.well-known/openid-configuration`)).json();
config = { issuer: discovery.issuer, client_id: registered.client_id, redirect_uri: `${spa}/cb` };

const browser = await launch();
const page = await (await browser.newContext()).newPage();
const crossOrigin = [];
page.on('request', (request) => {
  if (request.url().startsWith(base) && request.resourceType() === 'fetch') crossOrigin.push(`${request.method()} ${new URL(request.url()).pathname}`);
});
await page.goto(`${spa}/`);
await page.waitForURL(`${base}/login**`);
await page.getByLabel('Username or email').fill(username);
await page.getByLabel('Password', { exact: true }).fill(password);
await page.getByRole('button', { name: 'Sign in', exact: true }).click();
await page.waitForURL(`${spa}/cb?**`);
await page.waitForFunction(() => document.querySelector('#result')?.textContent, null, { timeout: 20000 });
const result = JSON.parse(await page.textContent('#result'));
await screenshot(page, artifacts, 'spa-dpop');
check(result.ok, `the SPA failed: ${JSON.stringify(result)}`);
check(result.token_type.toLowerCase() === 'dpop', `token_type ${result.token_type}`);
check(result.nonce_retry === true, 'the first token request was asked for the server nonce');
check(result.cnf_jkt === result.jkt, 'the access token is bound to the page key');
check(result.userinfo_sub === result.sub, 'userinfo with DPoP from the page');
check(result.bearer_status === 401, `the bound token as bearer: ${result.bearer_status}`);
check(result.refreshed_type.toLowerCase() === 'dpop' && result.refreshed_jkt === result.jkt, 'refreshed with the same key');
check(result.stolen === 'invalid_dpop_proof', `the refresh token with another key: ${result.stolen}`);
for (const call of ['POST /oauth2/token', 'GET /oidc/userinfo']) {
  check(crossOrigin.includes(call), `${call} from the page (seen: ${crossOrigin.join(', ')})`);
}
await browser.close();
spaServer.close();
console.log('OK: SPA on another origin: code + PKCE + DPoP, nonce, userinfo, bound refresh');
