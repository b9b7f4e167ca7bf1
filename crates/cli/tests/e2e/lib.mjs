// Shared helpers of the browser scenarios: Debian's Chromium through playwright-core, RFC 6238
// codes computed with node:crypto, screenshots under target/e2e-artifacts/.
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.TRUSTGATE_CHROMIUM || '/usr/bin/chromium';

/** Parses `node scenario.mjs BASE USERNAME PASSWORD ARTIFACT_DIR`. */
export function args() {
  const [base, username, password, artifacts] = process.argv.slice(2);
  if (!base || !username || !password || !artifacts) {
    console.error('usage: node <scenario>.mjs BASE USERNAME PASSWORD ARTIFACT_DIR');
    process.exit(2);
  }
  mkdirSync(artifacts, { recursive: true });
  return { base, username, password, artifacts };
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export async function screenshot(page, artifacts, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Signs in with a password; returns after the response to the form. */
export async function submitLogin(page, base, username, password) {
  await page.goto(`${base}/login`);
  await page.getByLabel('Username or email').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
}

/** The path of the page's current URL. */
export function pathOf(page) {
  return new URL(page.url()).pathname;
}

// ---- RFC 6238 (TOTP) over RFC 4226 (HOTP): HMAC-SHA-1, 6 digits, 30-second steps ----

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function base32Decode(text) {
  const clean = text.replace(/[\s=-]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const index = BASE32.indexOf(ch);
    if (index < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function hotp(key, counter) {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const digest = createHmac('sha1', key).update(message).digest();
  const offset = digest[digest.length - 1] & 0x0f;
  const binary = ((digest[offset] & 0x7f) << 24) | (digest[offset + 1] << 16) | (digest[offset + 2] << 8) | digest[offset + 3];
  return String(binary % 1_000_000).padStart(6, '0');
}

/** The TOTP code of `secretBase32` at `unixSeconds` (default: now). */
export function totp(secretBase32, unixSeconds = Date.now() / 1000) {
  return hotp(base32Decode(secretBase32), Math.floor(unixSeconds / 30));
}

/** RFC 6238 Appendix B test vector, so a broken implementation fails loudly, not as a login error. */
export function selfTest() {
  const key = Buffer.from('12345678901234567890', 'ascii');
  const code8 = (t) => {
    const message = Buffer.alloc(8);
    message.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
    const d = createHmac('sha1', key).update(message).digest();
    const o = d[d.length - 1] & 0x0f;
    const b = ((d[o] & 0x7f) << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3];
    return String(b % 100_000_000).padStart(8, '0');
  };
  check(code8(59) === '94287082', 'RFC 6238 vector at T=59');
  check(code8(1111111109) === '07081804', 'RFC 6238 vector at T=1111111109');
  check(hotp(key, 0) === '755224', 'RFC 4226 vector 0');
  check(base32Decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ').toString('ascii') === '12345678901234567890', 'base32');
}

/** Runs `body` with a browser, reporting failures with a screenshot of every open page. */
export async function run(name, body) {
  const browser = await launch();
  try {
    await body(browser);
    console.log(`OK: ${name}`);
  } catch (err) {
    console.error(`FAILED: ${name}: ${err.stack || err}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
