// The learning-platform example (`trustgate demo`) in a real browser: a student signs in through
// trustgate, reads her own progress (allowed) and another student's (denied); the admin sets up
// an authenticator app, signs in, is sent back to trustgate for a second factor when she changes
// the settings (RFC 9470 step-up), and the change is then allowed.
import { mkdirSync } from 'node:fs';
import { check, pathOf, run, screenshot, selfTest, submitLogin, totp } from './lib.mjs';

const [trustgate, app, password, artifacts, bobId] = process.argv.slice(2);
if (!trustgate || !app || !password || !artifacts || !bobId) {
  console.error('usage: node learning.mjs TRUSTGATE_URL APP_URL PASSWORD ARTIFACT_DIR BOB_ID');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
selfTest();

const appOrigin = new URL(app).origin;
const onApp = (page) => new URL(page.url()).origin === appOrigin;

/** From the example's home page, through trustgate's sign-in form, back to the example. */
async function signInAtApp(page, username) {
  await page.goto(app);
  await Promise.all([page.waitForLoadState('load'), page.locator('#sign-in').click()]);
  check(!onApp(page) && pathOf(page) === '/login', `trustgate's sign-in page, at ${page.url()}`);
  await page.getByLabel('Username or email').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await Promise.all([page.waitForURL((url) => url.origin === appOrigin), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  await page.waitForLoadState('load');
  const who = (await page.locator('#signed-in').count()) ? await page.locator('#signed-in').textContent() : await page.content();
  check(who.includes(username), `signed in as ${username}, at ${page.url()}: ${who}`);
}

async function result(page) {
  const el = page.locator('#result');
  return { status: await el.getAttribute('data-status'), text: (await el.textContent()).trim() };
}

await run('learning platform', async (browser) => {
  // A student: her own progress is allowed, another student's is denied.
  const student = await browser.newContext();
  const page = await student.newPage();
  await signInAtApp(page, 'alice');
  await screenshot(page, artifacts, 'learning-home');
  await Promise.all([page.waitForLoadState('load'), page.getByRole('link', { name: 'My progress' }).click()]);
  let r = await result(page);
  check(r.status === '200' && r.text === 'Allowed', `own progress allowed: ${JSON.stringify(r)}`);
  check((await page.locator('#content').textContent()).includes('alice'), 'her progress is shown');
  await screenshot(page, artifacts, 'learning-allowed');
  await page.goto(`${app}progress/${bobId}`);
  r = await result(page);
  check(r.status === '403' && r.text.startsWith('Denied'), `another student's progress denied: ${JSON.stringify(r)}`);
  check((await page.locator('#content').count()) === 0, 'nothing of bob is shown');
  await screenshot(page, artifacts, 'learning-denied');
  await student.close();

  // The admin: an authenticator app first (at trustgate), then the settings with a step-up.
  const admin = await browser.newContext();
  const p = await admin.newPage();
  await submitLogin(p, trustgate, 'erin', password);
  check(pathOf(p) === '/account', `erin at her account, at ${p.url()}`);
  await Promise.all([p.waitForLoadState('load'), p.getByRole('button', { name: 'Set up an authenticator app' }).click()]);
  const secret = (await p.locator('#totp-secret').textContent()).trim();
  await p.getByLabel('Code from the app').fill(totp(secret));
  await Promise.all([p.waitForLoadState('load'), p.getByRole('button', { name: 'Turn on two-step verification' }).click()]);
  check(pathOf(p) === '/account/recovery-codes', `TOTP on, at ${p.url()}`);

  // Her trustgate session is a one-factor one (she signed in before the app was set up): the
  // example signs her in without asking again.
  await p.goto(app);
  await p.locator('#sign-in').click();
  await p.locator('#signed-in').waitFor();
  check((await p.locator('#signed-in').textContent()).includes('erin'), 'erin signed in at the example');
  await p.goto(`${app}settings`);
  check((await p.getByLabel('Banner').count()) === 1, `the settings form, at ${p.url()}: ${await p.content()}`);
  await p.getByLabel('Banner').fill('Maintenance tonight');
  await Promise.all([
    p.waitForURL((url) => url.origin !== appOrigin),
    p.getByRole('button', { name: 'Change settings' }).click(),
  ]);
  // RFC 9470: the API answered insufficient_user_authentication; the example asked trustgate
  // for acr_values=2, and trustgate asks for the second factor.
  await p.waitForLoadState('load');
  check(new URL(p.url()).origin !== appOrigin, `sent to trustgate for a second factor, at ${p.url()}`);
  await screenshot(p, artifacts, 'learning-step-up');
  check(pathOf(p) === '/account/reauth', `trustgate asks her to confirm it is her, at ${p.url()}`);
  await p.getByLabel('Password', { exact: true }).fill(password);
  await p.getByLabel('Verification code').fill(totp(secret, Date.now() / 1000 + 30));
  await Promise.all([p.waitForURL((url) => url.origin === appOrigin), p.getByRole('button', { name: 'Continue' }).click()]);
  check(pathOf(p) === '/settings', `back at the settings, at ${p.url()}`);
  await p.getByLabel('Banner').fill('Maintenance tonight');
  await Promise.all([p.waitForLoadState('load'), p.getByRole('button', { name: 'Change settings' }).click()]);
  r = await result(p);
  check(r.status === '200' && r.text === 'Allowed', `settings change allowed after the step-up: ${JSON.stringify(r)}`);
  await p.goto(app);
  check((await p.locator('#site-banner').textContent()).includes('Maintenance tonight'), 'the new banner is shown');
  await screenshot(p, artifacts, 'learning-settings-changed');
  await admin.close();
});
