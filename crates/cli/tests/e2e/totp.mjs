// Authenticator app enrolment, then sign-in with password and a TOTP code computed here.
import { args, check, pathOf, run, screenshot, selfTest, submitLogin, totp } from './lib.mjs';

const { base, username, password, artifacts } = args();
selfTest();

await run('totp', async (browser) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await submitLogin(page, base, username, password);
  check(pathOf(page) === '/account', `signed in, at ${page.url()}`);

  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Set up an authenticator app' }).click()]);
  check(pathOf(page) === '/account/totp', `enrolment page, at ${page.url()}`);
  const qr = await page.locator('img[alt^="QR code"]').getAttribute('src');
  check(qr.startsWith('data:image/png;base64,'), 'QR code inline as PNG');
  const loaded = await page.locator('img[alt^="QR code"]').evaluate((img) => img.complete && img.naturalWidth > 0);
  check(loaded, 'QR code image decoded (CSP allows data: images)');
  const secret = (await page.locator('#totp-secret').textContent()).trim();
  await screenshot(page, artifacts, 'totp-setup');

  await page.getByLabel('Code from the app').fill(totp(secret));
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Turn on two-step verification' }).click()]);
  check(pathOf(page) === '/account/recovery-codes', `recovery codes, at ${page.url()}`);
  const codes = await page.locator('#recovery-codes code').allTextContents();
  check(codes.length >= 8, `recovery codes shown: ${codes.length}`);
  await screenshot(page, artifacts, 'recovery-codes');
  // Shown once: a reload does not show them again.
  await page.reload();
  check(pathOf(page) !== '/account/recovery-codes' || (await page.locator('#recovery-codes code').count()) === 0, 'codes shown only once');

  await page.goto(`${base}/account`);
  check(/authenticator app is set up/i.test(await page.locator('#totp-status').textContent()), 'TOTP on');
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign out', exact: true }).first().click()]);

  // Password alone is not enough now.
  await submitLogin(page, base, username, password);
  check(pathOf(page) === '/login/mfa', `second factor asked, at ${page.url()}`);
  await screenshot(page, artifacts, 'mfa');
  await page.getByLabel('Verification code').fill('000000' === totp(secret) ? '111111' : '000000');
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Verify' }).click()]);
  check(pathOf(page) === '/login/mfa', 'wrong code refused');
  check(/code/i.test(await page.getByRole('alert').textContent()), 'error shown');
  // The enrolment used the current step; the next step's code is within the accepted skew and
  // is not a replay.
  await page.getByLabel('Verification code').fill(totp(secret, Date.now() / 1000 + 30));
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Verify' }).click()]);
  check(pathOf(page) === '/account', `signed in with TOTP, at ${page.url()}`);

  // A recovery code works once.
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign out', exact: true }).first().click()]);
  await submitLogin(page, base, username, password);
  check(pathOf(page) === '/login/mfa', 'second factor asked again');
  await page.getByLabel('Verification code').fill(codes[0]);
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Verify' }).click()]);
  check(pathOf(page) === '/account', `signed in with a recovery code, at ${page.url()}`);
  await context.close();
});
