import { describe, expect, it } from 'vitest';
import { createSessionManager, sessionReference } from '../../../src/identity/sessions.js';
import { createMemoryStore } from '../../../src/store/index.js';

function setup() {
  let t = 1_000_000;
  const store = createMemoryStore({ now: () => t });
  const sessions = createSessionManager({ store, idleTimeoutMs: 60_000, maxLifetimeMs: 300_000, now: () => t });
  const base = { user: 'alice', email: 'alice@example.com', groups: ['eng'], provider: 'local', method: 'pwd' as const, authTime: t };
  return { sessions, base, advance: (ms: number) => (t += ms), store };
}

describe('createSessionManager', () => {
  it('issues a fresh 256-bit random id for every session', async () => {
    const { sessions, base } = setup();
    const a = await sessions.create(base);
    const b = await sessions.create(base);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.id).not.toBe(b.id);
  });

  it('ends a session that stayed idle longer than the idle timeout', async () => {
    const { sessions, base, advance } = setup();
    const s = await sessions.create(base);
    advance(59_000);
    expect(await sessions.get(s.id)).toBeDefined();
    advance(59_000);
    expect(await sessions.get(s.id)).toBeDefined();
    advance(61_000);
    expect(await sessions.get(s.id)).toBeUndefined();
  });

  it('ends a busy session at its absolute lifetime', async () => {
    const { sessions, base, advance } = setup();
    const s = await sessions.create(base);
    for (let i = 0; i < 10; i++) {
      advance(29_000);
      expect(await sessions.get(s.id)).toBeDefined();
    }
    advance(20_000);
    expect(await sessions.get(s.id)).toBeUndefined();
  });

  it('rotates to a new id and kills the old one', async () => {
    const { sessions, base } = setup();
    const s = await sessions.create(base);
    const r = await sessions.rotate(s, { mfa: { factor: 'webauthn', at: 1 } });
    expect(r.id).not.toBe(s.id);
    expect(r.record.csrf).not.toBe(s.record.csrf);
    expect(await sessions.get(s.id)).toBeUndefined();
    expect((await sessions.get(r.id))?.record.mfa).toEqual({ factor: 'webauthn', at: 1 });
  });

  it('revokes every session of a user', async () => {
    const { sessions, base } = setup();
    const a = await sessions.create(base);
    const b = await sessions.create(base);
    const other = await sessions.create({ ...base, user: 'bob' });
    expect(await sessions.revokeAllForUser('alice')).toBe(2);
    expect(await sessions.get(a.id)).toBeUndefined();
    expect(await sessions.get(b.id)).toBeUndefined();
    expect(await sessions.get(other.id)).toBeDefined();
  });

  it('never stores the session id itself', async () => {
    const { sessions, base, store } = setup();
    const s = await sessions.create(base);
    expect(await store.get(`session:${s.id}`)).toBeUndefined();
  });

  it('ignores malformed ids without touching the store', async () => {
    const { sessions } = setup();
    for (const id of ['', 'short', `${'a'.repeat(43)}=`, '../../etc/passwd']) expect(await sessions.get(id)).toBeUndefined();
  });

  it('describes the identity with the SPEC session reference', async () => {
    const { sessions, base } = setup();
    const s = await sessions.create(base);
    const id = sessions.identityOf(s);
    expect(id).toMatchObject({ user: 'alice', auth: 'cookie', amr: ['pwd'], session: sessionReference(s.id) });
    expect(id.session).toMatch(/^[0-9a-f]{16}$/);
  });
});
