// Two browsers signed in as the same person; the first signs the second out from the account page.
import { args, check, pathOf, run, screenshot, submitLogin } from './lib.mjs';

const { base, username, password, artifacts } = args();

await run('sessions', async (browser) => {
  const a = await browser.newContext({ userAgent: 'trustgate-e2e browser A' });
  const b = await browser.newContext({ userAgent: 'trustgate-e2e browser B' });
  const pageA = await a.newPage();
  const pageB = await b.newPage();
  await submitLogin(pageA, base, username, password);
  await submitLogin(pageB, base, username, password);
  check(pathOf(pageA) === '/account' && pathOf(pageB) === '/account', 'both signed in');

  await pageA.reload();
  const rows = pageA.locator('#sessions tbody tr');
  check((await rows.count()) >= 2, `two sessions listed: ${await rows.count()}`);
  const other = pageA.locator('#sessions tbody tr', { hasText: 'browser B' });
  check((await other.count()) === 1, 'the other browser is listed by its user agent');
  await screenshot(pageA, artifacts, 'account-sessions');
  await Promise.all([pageA.waitForLoadState('load'), other.getByRole('button').click()]);
  check(pathOf(pageA) === '/account', `back on the account page, at ${pageA.url()}`);
  check((await pageA.locator('#sessions tbody tr', { hasText: 'browser B' }).count()) === 0, 'B no longer listed');

  await pageB.reload();
  check(pathOf(pageB) === '/login', `B is signed out, at ${pageB.url()}`);

  // "Sign out all other sessions" from B after it signs in again.
  await submitLogin(pageB, base, username, password);
  check(pathOf(pageB) === '/account', 'B signed in again');
  await Promise.all([pageB.waitForLoadState('load'), pageB.getByRole('button', { name: 'Sign out all other sessions' }).last().click()]);
  await pageA.reload();
  check(pathOf(pageA) === '/login', `A is signed out by B, at ${pageA.url()}`);
  await pageB.reload();
  check(pathOf(pageB) === '/account', 'B stays signed in');
  await a.close();
  await b.close();
});
