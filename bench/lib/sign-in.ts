// Signs a user in to a running gateway the way a browser does (login form, CSRF), optionally
// enrols a passkey (a software authenticator; enrolling is itself a fresh WebAuthn check), and
// prints `{"cookie": "<Cookie header value>"}` for a load generator to replay.
//   npx tsx bench/lib/sign-in.ts PORT USER PASSWORD [--passkey]
import { GatewayAgent, signInAgent } from '../../test/support/gateway-agent.js';

const [port, user, password, flag] = process.argv.slice(2);
if (port === undefined || user === undefined || password === undefined) {
  console.error('usage: npx tsx bench/lib/sign-in.ts PORT USER PASSWORD [--passkey]');
  process.exit(2);
}
const agent = await signInAgent(new GatewayAgent(Number(port), user), password);
if (flag === '--passkey') await agent.enrolPasskey();
console.log(JSON.stringify({ cookie: agent.cookieHeader() }));
