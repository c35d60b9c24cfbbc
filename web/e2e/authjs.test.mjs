// The README's route handlers read the session token with getToken({raw: true}) and send it
// to chatd as a Bearer token. This checks, with the pinned @auth/core, that what getToken
// returns is the token encode made, chunked cookies joined, which api/authjs_test.go shows
// chatd accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode, getToken } from '@auth/core/jwt';

const { SessionStore } = await import(new URL('./node_modules/@auth/core/lib/utils/cookie.js', import.meta.url).href);
const quiet = { debug() {}, warn() {}, error() {} };

for (const secureCookie of [false, true]) {
  test(`getToken raw returns the whole token from chunked cookies (secureCookie: ${secureCookie})`, async () => {
    const salt = (secureCookie ? '__Secure-' : '') + 'authjs.session-token';
    const token = await encode({ secret: 's', salt, token: { sub: 'alice', picture: 'p'.repeat(9000) } });
    const cookies = new SessionStore({ name: salt, options: {} }, {}, quiet).chunk(token, {});
    assert.ok(cookies.length > 1, 'the session is chunked');
    const cookie = cookies.map((/** @type {{name: string, value: string}} */ c) => `${c.name}=${c.value}`).join('; ');
    const raw = await getToken({ req: { headers: { cookie } }, secret: 's', secureCookie, raw: true });
    assert.equal(raw, token);
  });
}
