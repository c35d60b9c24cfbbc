// authjs-token.mjs: mints Auth.js v5 session tokens with the real @auth/core, for chatd's Go
// tests (api/authjs_test.go). Usage: node authjs-token.mjs '<json>' where json is a list of
//   {"secret": "...", "salt": "authjs.session-token", "maxAge": 3600, "token": {"sub": ...}}
// For each it prints a line {"token": "...", "cookies": [{"name", "value"}, ...]}: the token from `encode` of
// @auth/core/jwt, and the cookies Auth.js's SessionStore sets for it (one, or chunks .0, .1, …
// when the token is too large for one cookie), with the salt as the cookie name, as Auth.js
// names its session cookie.
import { encode } from '@auth/core/jwt';
// SessionStore is not among the package's exports; the file is imported by its path so the
// chunks are the ones Auth.js itself would write.
const { SessionStore } = await import(new URL('./node_modules/@auth/core/lib/utils/cookie.js', import.meta.url).href);

const quiet = { debug() {}, warn() {}, error() {} };
for (const p of JSON.parse(process.argv[2] ?? '[]')) {
  const token = await encode({ secret: p.secret, salt: p.salt, maxAge: p.maxAge, token: p.token });
  const store = new SessionStore({ name: p.salt, options: {} }, {}, quiet);
  const cookies = store.chunk(token, {}).map((/** @type {{name: string, value: string}} */ c) => ({ name: c.name, value: c.value }));
  process.stdout.write(JSON.stringify({ token, cookies }) + '\n');
}
