// Password sign-in and sign-out without JavaScript on the pages.
import { args, check, pathOf, run, screenshot, submitLogin } from './lib.mjs';

const { base, username, password, artifacts } = args();

await run('login_logout', async (browser) => {
  const context = await browser.newContext();
  const page = await context.newPage();

  // An unauthenticated visit to the account page goes to the login page with `next`.
  await page.goto(`${base}/account`);
  check(pathOf(page) === '/login', `redirected to login, at ${page.url()}`);
  check(new URL(page.url()).searchParams.get('next') === '/account', 'next kept');
  check((await page.getAttribute('html', 'lang')) === 'en', 'lang attribute');
  await screenshot(page, artifacts, 'login');

  // Wrong password: the same page with an error tied to the fields.
  await submitLogin(page, base, username, 'not-the-password');
  check(pathOf(page) === '/login', 'still on login after a wrong password');
  const alert = await page.getByRole('alert').textContent();
  check(/incorrect/i.test(alert), `error shown: ${alert}`);
  check((await page.getByLabel('Password', { exact: true }).getAttribute('aria-invalid')) === 'true', 'field marked invalid');
  await screenshot(page, artifacts, 'login-error');

  await submitLogin(page, base, username, password);
  check(pathOf(page) === '/account', `signed in, at ${page.url()}`);
  check((await page.locator('#profile-username').textContent()) === username, 'username shown');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === '__Host-trustgate_session');
  check(session, `session cookie set: ${JSON.stringify(cookies.map((c) => c.name))}`);
  check(session.httpOnly && session.secure && session.sameSite === 'Lax' && session.path === '/', 'cookie flags');
  await screenshot(page, artifacts, 'account');

  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign out', exact: true }).first().click()]);
  check(pathOf(page) === '/login', `signed out, at ${page.url()}`);
  await page.goto(`${base}/account`);
  check(pathOf(page) === '/login', 'account needs a new sign-in after sign-out');
  await context.close();
});
