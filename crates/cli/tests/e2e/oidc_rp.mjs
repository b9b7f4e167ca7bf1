// A real relying party against trustgate: openid-client 6 (OpenID-certified) for every protocol
// step, jose for independent JWT checks, headless Chromium for the pages (login, consent, device
// code entry, logout). Run by crates/cli/tests/it/oidc.rs:
//   node oidc_rp.mjs BASE USERNAME PASSWORD ARTIFACT_DIR   (TRUSTGATE_ADMIN_TOKEN in the env)
// The server runs with a 1 s refresh grace, a 4 s key publish-ahead and a 1 s device interval so
// the scenario does not sleep for minutes.
import { createServer } from 'node:http';
import * as client from 'openid-client';
import * as jose from 'jose';
import { args, check, launch, screenshot } from './lib.mjs';

const { base, username, password, artifacts } = args();
const adminToken = process.env.TRUSTGATE_ADMIN_TOKEN;
if (!adminToken) throw new Error('TRUSTGATE_ADMIN_TOKEN is required');
const insecure = { execute: [client.allowInsecureRequests] };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const steps = [];
const step = (name) => { steps.push(name); console.log(`step: ${name}`); };

// ---- the relying party's own endpoints: redirect target, post-logout target, back-channel ----
const backchannel = [];
const rpServer = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/backchannel') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      backchannel.push(new URLSearchParams(body).get('logout_token'));
      res.writeHead(200, { 'cache-control': 'no-store' }).end();
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>RP</title><p>relying party</p>');
});
await new Promise((resolve) => rpServer.listen(0, '127.0.0.1', resolve));
const rp = `http://127.0.0.1:${rpServer.address().port}`;

async function admin(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function expectOAuthError(promise, code, what) {
  try {
    await promise;
  } catch (err) {
    check(err.error === code, `${what}: expected ${code}, got ${err.error ?? err}`);
    return;
  }
  throw new Error(`${what}: expected ${code}, but it succeeded`);
}

// ---- clients, registered through the admin API ----
const web = await admin('POST', '/admin/v1/clients', {
  name: 'Demo RP',
  redirect_uris: [`${rp}/cb`],
  post_logout_redirect_uris: [`${rp}/logged-out`],
  grant_types: ['authorization_code', 'refresh_token'],
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  auth_method: 'client_secret_basic',
  backchannel_logout_uri: `${rp}/backchannel`,
  audience: ['https://gateway.example'],
});
const service = await admin('POST', '/admin/v1/clients', {
  name: 'Billing service',
  redirect_uris: [],
  grant_types: ['client_credentials'],
  scopes: ['invoices:read', 'invoices:write'],
  audience: ['https://api.example'],
});
const tv = await admin('POST', '/admin/v1/clients', {
  name: 'TV app',
  redirect_uris: [],
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  scopes: ['openid', 'profile', 'offline_access'],
  auth_method: 'none',
});
const gateway = await admin('POST', '/admin/v1/clients', {
  name: 'Gateway',
  redirect_uris: [],
  grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange'],
  scopes: ['profile'],
  resource_audiences: ['https://gateway.example'],
  token_exchange: { audiences: ['https://orders.example'] },
});
const orders = await admin('POST', '/admin/v1/clients', {
  name: 'Orders API',
  redirect_uris: [],
  grant_types: ['client_credentials'],
  resource_audiences: ['https://orders.example'],
});
check(web.client_secret && service.client_secret && !tv.client_secret, 'secrets only for confidential clients');

// ---- discovery ----
step('discovery');
const issuer = new URL(base);
const config = await client.discovery(issuer, web.client_id, web.client_secret, client.ClientSecretBasic(web.client_secret), insecure);
client.enableNonRepudiationChecks(config); // ID tokens are verified against the JWKS too
const meta = config.serverMetadata();
check(meta.issuer === base, `issuer ${meta.issuer}`);
check(meta.code_challenge_methods_supported.join() === 'S256', 'S256 only');
check(meta.authorization_response_iss_parameter_supported === true, 'RFC 9207');
const remoteJwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri), { cooldownDuration: 0 });

const browser = await launch();
const page = await (await browser.newContext()).newPage();

async function authorize(extra = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: `${rp}/cb`,
    scope: 'openid profile email offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    nonce,
    state,
    ...extra,
  });
  return { url, verifier, nonce, state };
}

async function finish(request, { maxAge } = {}) {
  await page.waitForURL(`${rp}/cb?**`);
  return client.authorizationCodeGrant(config, new URL(page.url()), {
    pkceCodeVerifier: request.verifier,
    expectedNonce: request.nonce,
    expectedState: request.state,
    idTokenExpected: true,
    ...(maxAge !== undefined ? { maxAge } : {}),
  });
}

// ---- authorization code + PKCE: login page, consent page, callback ----
step('authorization code + PKCE with login and consent');
const first = await authorize();
await page.goto(first.url.href);
check(new URL(page.url()).pathname === '/login', `login page first, got ${page.url()}`);
await page.getByLabel('Username or email').fill(username);
await page.getByLabel('Password', { exact: true }).fill(password);
await page.getByRole('button', { name: 'Sign in', exact: true }).click();
await page.waitForSelector('#consent-approve');
check((await page.textContent('#consent-client')).includes('Demo RP'), 'consent names the client');
await screenshot(page, artifacts, 'consent');
await page.click('#consent-approve');
const tokens1 = await finish(first);
const claims1 = tokens1.claims();
check(claims1.nonce === first.nonce, 'nonce echoed');
check(claims1.azp === web.client_id && claims1.aud === web.client_id, 'azp/aud');
check(typeof claims1.auth_time === 'number' && claims1.amr.includes('pwd'), 'auth_time and amr');
check(typeof tokens1.refresh_token === 'string', 'refresh token issued');
{
  const { protectedHeader } = await jose.jwtVerify(tokens1.id_token, remoteJwks, { issuer: base, audience: web.client_id });
  check(protectedHeader.alg === 'RS256' && protectedHeader.kid, 'ID token RS256 with kid');
  const at = await jose.jwtVerify(tokens1.access_token, remoteJwks, { issuer: base, typ: 'at+jwt' });
  check(at.payload.client_id === web.client_id && at.payload.sub === claims1.sub, 'RFC 9068 access token');
}

step('userinfo');
const info = await client.fetchUserInfo(config, tokens1.access_token, claims1.sub);
check(info.preferred_username === username && info.email === `${username}@example.com`, `userinfo ${JSON.stringify(info)}`);

step('introspection');
const intro1 = await client.tokenIntrospection(config, tokens1.access_token);
check(intro1.active === true && intro1.sub === claims1.sub && intro1.client_id === web.client_id, 'active access token');

// ---- refresh rotation and reuse detection ----
step('refresh rotation');
const tokens2 = await client.refreshTokenGrant(config, tokens1.refresh_token);
check(tokens2.refresh_token !== tokens1.refresh_token, 'refresh token rotated');
check(tokens2.claims().sub === claims1.sub, 'same subject after refresh');
await sleep(1500); // past the 1 s grace period
step('refresh token reuse revokes the family');
await expectOAuthError(client.refreshTokenGrant(config, tokens1.refresh_token), 'invalid_grant', 'reused refresh token');
await expectOAuthError(client.refreshTokenGrant(config, tokens2.refresh_token), 'invalid_grant', 'successor of a reused token');
check((await client.tokenIntrospection(config, tokens2.access_token)).active === false, 'access token of the revoked family');

// ---- max_age=1 forces re-authentication; consent is remembered ----
step('max_age=1 forces re-login, auth_time moves');
await sleep(2100);
const second = await authorize({ max_age: '1' });
await page.goto(second.url.href);
check(new URL(page.url()).pathname === '/account/reauth', `re-authentication asked, got ${page.url()}`);
await page.getByLabel('Password', { exact: true }).fill(password);
await page.getByRole('button', { name: 'Continue' }).click();
const tokens3 = await finish(second, { maxAge: 1 });
check(tokens3.claims().auth_time > claims1.auth_time, 'auth_time moved');

// ---- key rotation in the middle of the session ----
step('key rotation mid-session');
const oldKid = jose.decodeProtectedHeader(tokens3.id_token).kid;
const rotated = await admin('POST', '/admin/v1/keys/rotate', { algorithm: 'RS256' });
const snapshot = await (await fetch(meta.jwks_uri)).json();
const cached = jose.createLocalJWKSet(snapshot); // what an RP cached right after the rotation
const newKids = (rotated.keys ?? rotated).map((k) => k.kid);
check(newKids.every((kid) => snapshot.keys.some((k) => k.kid === kid)), 'new key published at once');
const stillOld = await client.refreshTokenGrant(config, tokens3.refresh_token);
check(jose.decodeProtectedHeader(stillOld.id_token).kid === oldKid, 'the new key does not sign before its time');
await sleep(4500); // publish-ahead is 4 s in this run
// An RP refreshes its JWKS cache within the JWKS max-age (300 s), which is shorter than the
// production publish-ahead (600 s), so it knows the new key before the key signs. This run's
// publish-ahead is 4 s, so emulate that refresh with a fresh configuration (its JWKS is fetched
// on first use, after the rotation) for the same client and the same session's tokens.
const refreshed = await client.discovery(issuer, web.client_id, web.client_secret, client.ClientSecretBasic(web.client_secret), insecure);
client.enableNonRepudiationChecks(refreshed);
const tokens4 = await client.refreshTokenGrant(refreshed, stillOld.refresh_token);
const newKid = jose.decodeProtectedHeader(tokens4.id_token).kid;
check(newKid !== oldKid && newKids.includes(newKid), 'the new key signs after its publish-ahead');
for (const token of [tokens3.id_token, stillOld.id_token, tokens4.id_token]) {
  await jose.jwtVerify(token, cached, { issuer: base, audience: web.client_id });
  await jose.jwtVerify(token, remoteJwks, { issuer: base, audience: web.client_id });
}
check((await client.fetchUserInfo(config, tokens4.access_token, claims1.sub)).sub === claims1.sub, 'userinfo after rotation');

// ---- token exchange (RFC 8693): the gateway exchanges the user's token for the orders API ----
step('token exchange');
const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
check(meta.grant_types_supported.includes(exchangeGrant), 'discovery lists token exchange');
const gatewayConfig = await client.discovery(issuer, gateway.client_id, gateway.client_secret, client.ClientSecretBasic(gateway.client_secret), insecure);
const exchanged = await client.genericGrantRequest(gatewayConfig, exchangeGrant, {
  subject_token: tokens4.access_token,
  subject_token_type: accessTokenType,
  audience: 'https://orders.example',
});
check(exchanged.issued_token_type === accessTokenType && exchanged.token_type.toLowerCase() === 'bearer', 'issued_token_type');
check(!exchanged.refresh_token && exchanged.scope === 'profile' && exchanged.expires_in <= 300, 'narrowed, short-lived, no refresh token');
const downstream = await jose.jwtVerify(exchanged.access_token, remoteJwks, { issuer: base, audience: 'https://orders.example', typ: 'at+jwt' });
check(downstream.payload.sub === claims1.sub && downstream.payload.client_id === gateway.client_id, 'the user, through the gateway');
check(downstream.payload.act?.sub === gateway.client_id && downstream.payload.act?.client_id === gateway.client_id, 'act names the gateway');
const ordersConfig = await client.discovery(issuer, orders.client_id, orders.client_secret, client.ClientSecretBasic(orders.client_secret), insecure);
const seen = await client.tokenIntrospection(ordersConfig, exchanged.access_token);
check(seen.active === true && seen.act?.sub === gateway.client_id, 'the orders API introspects it with act');
await expectOAuthError(client.genericGrantRequest(gatewayConfig, exchangeGrant, {
  subject_token: tokens4.access_token,
  subject_token_type: accessTokenType,
  audience: 'https://ledger.example',
}), 'invalid_target', 'a target the gateway may not request');

// ---- revocation ----
step('revocation');
await client.tokenRevocation(config, tokens4.refresh_token);
await expectOAuthError(client.refreshTokenGrant(config, tokens4.refresh_token), 'invalid_grant', 'revoked refresh token');
check((await client.tokenIntrospection(config, tokens4.access_token)).active === false, 'access token of a revoked grant');

// ---- client credentials ----
step('client credentials');
const serviceConfig = await client.discovery(issuer, service.client_id, service.client_secret, client.ClientSecretBasic(service.client_secret), insecure);
const machine = await client.clientCredentialsGrant(serviceConfig, { scope: 'invoices:read' });
check(machine.scope === 'invoices:read' && !machine.refresh_token, 'scoped token, no refresh token');
const machineJwt = await jose.jwtVerify(machine.access_token, remoteJwks, { issuer: base, audience: 'https://api.example', typ: 'at+jwt' });
check(machineJwt.payload.sub === service.client_id, 'sub is the client');
check((await client.tokenIntrospection(serviceConfig, machine.access_token)).active === true, 'service introspects its token');
await expectOAuthError(client.clientCredentialsGrant(serviceConfig, { scope: 'openid' }), 'invalid_scope', 'user scope for a machine');

// ---- DPoP (RFC 9449): sender-constrained tokens, the nonce dance done by openid-client ----
step('DPoP client credentials');
check(meta.dpop_signing_alg_values_supported.includes('ES256'), 'DPoP algorithms advertised');
const dpopKeys = await client.randomDPoPKeyPair('ES256');
const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKeys.publicKey));
const serviceDpop = client.getDPoPHandle(serviceConfig, dpopKeys);
const boundMachine = await client.clientCredentialsGrant(serviceConfig, { scope: 'invoices:read' }, { DPoP: serviceDpop });
check(boundMachine.token_type.toLowerCase() === 'dpop', `token_type DPoP, got ${boundMachine.token_type}`);
const boundJwt = await jose.jwtVerify(boundMachine.access_token, remoteJwks, { issuer: base, typ: 'at+jwt' });
check(boundJwt.payload.cnf?.jkt === jkt, 'cnf.jkt is the thumbprint of the client key');
const boundIntrospection = await client.tokenIntrospection(serviceConfig, boundMachine.access_token);
check(boundIntrospection.token_type === 'DPoP' && boundIntrospection.cnf?.jkt === jkt, 'introspection tells the binding');

step('DPoP code flow, userinfo and a bound refresh token (public client)');
const spa = await admin('POST', '/admin/v1/clients', {
  name: 'DPoP app',
  redirect_uris: [`${rp}/cb`],
  grant_types: ['authorization_code', 'refresh_token'],
  scopes: ['openid', 'profile', 'offline_access'],
  auth_method: 'none',
  skip_consent: true,
});
const spaConfig = await client.discovery(issuer, spa.client_id, undefined, client.None(), insecure);
const spaDpop = client.getDPoPHandle(spaConfig, dpopKeys);
{
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(spaConfig, {
    redirect_uri: `${rp}/cb`,
    scope: 'openid profile offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    dpop_jkt: jkt,
  });
  await page.goto(url.href);
  await page.waitForURL(`${rp}/cb?**`);
  const spaTokens = await client.authorizationCodeGrant(spaConfig, new URL(page.url()), {
    pkceCodeVerifier: verifier,
    expectedState: state,
  }, undefined, { DPoP: spaDpop });
  check(spaTokens.token_type.toLowerCase() === 'dpop', 'code exchanged for a DPoP-bound token');
  const sub = spaTokens.claims().sub;
  check((await client.fetchUserInfo(spaConfig, spaTokens.access_token, sub, { DPoP: spaDpop })).sub === sub, 'userinfo with DPoP');
  const asBearer = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${spaTokens.access_token}` } });
  check(asBearer.status === 401 && asBearer.headers.get('www-authenticate').includes('invalid_token'), `a bound token as bearer: ${asBearer.status}`);
  const otherDpop = client.getDPoPHandle(spaConfig, await client.randomDPoPKeyPair('ES256'));
  await expectOAuthError(client.refreshTokenGrant(spaConfig, spaTokens.refresh_token), 'invalid_dpop_proof', 'bound refresh token without a proof');
  await expectOAuthError(client.refreshTokenGrant(spaConfig, spaTokens.refresh_token, undefined, { DPoP: otherDpop }), 'invalid_dpop_proof', 'bound refresh token with another key');
  const renewed = await client.refreshTokenGrant(spaConfig, spaTokens.refresh_token, undefined, { DPoP: spaDpop });
  check(renewed.token_type.toLowerCase() === 'dpop' && renewed.refresh_token !== spaTokens.refresh_token, 'the key holder refreshes');
}

// ---- device authorization grant ----
step('device flow');
const tvConfig = await client.discovery(issuer, tv.client_id, undefined, client.None(), insecure);
const device = await client.initiateDeviceAuthorization(tvConfig, { scope: 'openid profile offline_access' });
check(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/.test(device.user_code), `user code ${device.user_code}`);
const polling = client.pollDeviceAuthorizationGrant(tvConfig, device);
await page.goto(device.verification_uri_complete);
check((await page.textContent('#device-code')) === device.user_code, 'the page shows the code to confirm');
await screenshot(page, artifacts, 'device');
await page.click('#device-approve');
await page.waitForSelector('#device-done');
const tvTokens = await polling;
check(tvTokens.claims().sub === claims1.sub && tvTokens.refresh_token, 'device tokens for the user');

// ---- RP-initiated logout and back-channel logout ----
step('RP-initiated logout');
const sid = tokens4.claims().sid;
const logoutUrl = client.buildEndSessionUrl(config, {
  id_token_hint: tokens4.id_token,
  post_logout_redirect_uri: `${rp}/logged-out`,
  state: 'bye',
});
await page.goto(logoutUrl.href);
await page.waitForURL(`${rp}/logged-out?**`);
check(new URL(page.url()).searchParams.get('state') === 'bye', 'state echoed after logout');
for (let i = 0; i < 50 && backchannel.length === 0; i += 1) await sleep(100);
check(backchannel.length === 1, `one back-channel logout, got ${backchannel.length}`);
const logout = await jose.jwtVerify(backchannel[0], remoteJwks, { issuer: base, audience: web.client_id, typ: 'logout+jwt' });
check(logout.payload.sid === sid && logout.payload.sub === claims1.sub, 'logout token names the session');
check('http://schemas.openid.net/event/backchannel-logout' in logout.payload.events && !('nonce' in logout.payload), 'logout event');

step('prompt=none without a session');
const silent = await authorize({ prompt: 'none' });
await page.goto(silent.url.href);
await page.waitForURL(`${rp}/cb?**`);
const silentUrl = new URL(page.url());
check(silentUrl.searchParams.get('error') === 'login_required', `login_required, got ${silentUrl}`);
check(silentUrl.searchParams.get('iss') === base && silentUrl.searchParams.get('state') === silent.state, 'iss and state on errors');

await browser.close();
rpServer.close();
console.log(`OK: ${steps.length} steps: ${steps.join('; ')}`);
