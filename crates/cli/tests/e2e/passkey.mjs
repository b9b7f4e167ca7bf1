// Passkeys with Chromium's virtual authenticator (CDP WebAuthn domain): register two passkeys on
// /account (one per authenticator), sign out, sign in with "Sign in with a passkey", remove one.
// WebAuthn needs a domain as RP ID, so the scenario uses http://localhost rather than 127.0.0.1.
import { args, check, pathOf, run, screenshot, submitLogin } from './lib.mjs';

const { base: rawBase, username, password, artifacts } = args();
const base = rawBase.replace('://127.0.0.1', '://localhost');

async function addAuthenticator(cdp) {
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return authenticatorId;
}

async function addPasskey(page, name) {
  await page.goto(`${base}/account#passkeys`);
  const form = page.locator('#passkey-register');
  check(await form.isVisible(), 'add-a-passkey form shown (script ran under the CSP)');
  await page.getByLabel('Passkey name').fill(name);
  await Promise.all([
    page.waitForURL(/done=passkey_added/),
    page.getByRole('button', { name: 'Add a passkey' }).click(),
  ]);
  check(/passkey was added/i.test(await page.getByRole('status').first().textContent()), `${name} added`);
}

await run('passkey', async (browser) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cspErrors = [];
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspErrors.push(msg.text());
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');

  await submitLogin(page, base, username, password);
  check(pathOf(page) === '/account', `signed in with password, at ${page.url()}`);

  // Two passkeys, each on its own authenticator (one authenticator holds one per account).
  const first = await addAuthenticator(cdp);
  await addPasskey(page, 'Laptop');
  const firstCreds = await cdp.send('WebAuthn.getCredentials', { authenticatorId: first });
  check(firstCreds.credentials.length === 1 && firstCreds.credentials[0].isResidentCredential, 'discoverable credential created');
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: first });
  const second = await addAuthenticator(cdp);
  await addPasskey(page, 'Phone');
  const rows = await page.locator('#passkey-list tbody tr').allTextContents();
  check(rows.length === 2 && rows.some((r) => r.includes('Laptop')) && rows.some((r) => r.includes('Phone')), `two passkeys listed: ${rows}`);
  await screenshot(page, artifacts, 'passkeys-account');

  // Sign out, then sign in without a password.
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign out', exact: true }).first().click()]);
  check(pathOf(page) === '/login', `signed out, at ${page.url()}`);
  const button = page.getByRole('button', { name: 'Sign in with a passkey' });
  check(await button.isVisible(), 'passkey button shown on /login');
  await screenshot(page, artifacts, 'passkey-login');
  await Promise.all([page.waitForURL((url) => url.pathname === '/account'), button.click()]);
  check(pathOf(page) === '/account', `signed in with a passkey, at ${page.url()}`);
  check((await page.locator('#profile-username').textContent()).trim() === username, 'the right user');
  const used = await cdp.send('WebAuthn.getCredentials', { authenticatorId: second });
  check(used.credentials[0].signCount >= 1, `authenticator signed (count ${used.credentials[0].signCount})`);
  await screenshot(page, artifacts, 'passkey-signed-in');

  // Remove the first passkey (the passkey sign-in is a recent authentication).
  await Promise.all([
    page.waitForURL(/done=passkey_removed/),
    page.getByRole('button', { name: 'Remove the passkey Laptop' }).click(),
  ]);
  const left = await page.locator('#passkey-list tbody tr').allTextContents();
  check(left.length === 1 && left[0].includes('Phone'), `one passkey left: ${left}`);

  // The removed one's authenticator is gone; with no usable credential the sign-in fails cleanly.
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: second });
  check(cspErrors.length === 0, `no CSP violations: ${cspErrors}`);
  await context.close();
});
