import { createHmac } from 'node:crypto';
import { HOTP, Secret, URI, TOTP } from 'otpauth';
import { create as createQr } from 'qrcode';
import { describe, expect, it } from 'vitest';
import { checkTotp, newTotpSecret, totpCodeForStep, totpQrSvg, totpStep, totpUri } from '../../src/mfa/totp.js';

/** RFC 6238 Appendix B: the SHA1 seed is the ASCII string "12345678901234567890". */
const RFC_SECRET = Secret.fromLatin1('12345678901234567890').base32;
const RFC_SHA1_VECTORS: readonly (readonly [seconds: number, code: string])[] = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

/** An independent RFC 4226 implementation (HMAC-SHA1 + dynamic truncation), to cross-check otpauth. */
function referenceHotp(secretBase32: string, counter: number, digits: number): string {
  const key = Buffer.from(Secret.fromBase32(secretBase32).bytes);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = (mac[mac.length - 1] ?? 0) & 0x0f;
  const bin = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(bin % 10 ** digits).padStart(digits, '0');
}

/** A fixed secret and instant, so that the window tests are deterministic. */
const SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const NOW = Date.parse('2026-11-26T10:00:10Z'); // 10 s into its step
const STEP = totpStep(NOW);
const codeAt = (offset: number): string => totpCodeForStep(SECRET, STEP + offset);

describe('TOTP computation', () => {
  it.each(RFC_SHA1_VECTORS)('matches RFC 6238 Appendix B (SHA1, 8 digits) at T=%i', (seconds, expected) => {
    const step = totpStep(seconds * 1000);
    expect(step).toBe(Math.floor(seconds / 30));
    expect(totpCodeForStep(RFC_SECRET, step, 8)).toBe(expected);
    expect(referenceHotp(RFC_SECRET, step, 8)).toBe(expected);
    expect(TOTP.generate({ secret: Secret.fromBase32(RFC_SECRET), digits: 8, timestamp: seconds * 1000 })).toBe(expected);
  });

  it.each(RFC_SHA1_VECTORS)('accepts the 6-digit variant of the RFC 6238 vector at T=%i', (seconds, expected8) => {
    const step = Math.floor(seconds / 30);
    // A d-digit code is the binary value mod 10^d: the 6-digit code is the 8-digit one's last six digits.
    const expected6 = expected8.slice(2);
    expect(totpCodeForStep(RFC_SECRET, step)).toBe(expected6);
    expect(referenceHotp(RFC_SECRET, step, 6)).toBe(expected6);
    expect(checkTotp({ secret: RFC_SECRET, code: expected6, now: seconds * 1000, lastStep: 0 })).toEqual({ ok: true, step });
  });

  it('agrees with the reference implementation on random secrets', () => {
    for (let i = 0; i < 20; i++) {
      const secret = newTotpSecret();
      const step = 50_000_000 + i * 7919;
      expect(totpCodeForStep(secret, step)).toBe(referenceHotp(secret, step, 6));
    }
  });

  it('computes the time step from epoch ms', () => {
    expect(totpStep(0)).toBe(0);
    expect(totpStep(29_999)).toBe(0);
    expect(totpStep(30_000)).toBe(1);
    expect(totpStep(NOW)).toBe(Math.floor(NOW / 30_000));
    expect(() => totpStep(Number.NaN)).toThrow(TypeError);
  });

  it('refuses invalid secrets and steps', () => {
    expect(() => totpCodeForStep('not base32!', 1)).toThrow(TypeError);
    expect(() => totpCodeForStep('', 1)).toThrow(TypeError);
    expect(() => totpCodeForStep('JBSWY3DPEHPK3PXP', 1)).toThrow(/128 bits/); // 80 bits
    expect(() => totpCodeForStep(SECRET, -1)).toThrow(TypeError);
    expect(() => totpCodeForStep(SECRET, 1.5)).toThrow(TypeError);
  });
});

describe('newTotpSecret', () => {
  it('is 160 random bits in base32', () => {
    const secrets = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const s = newTotpSecret();
      expect(s).toMatch(/^[A-Z2-7]{32}$/);
      expect(Secret.fromBase32(s).bytes).toHaveLength(20);
      secrets.add(s);
    }
    expect(secrets.size).toBe(50);
  });
});

describe('checkTotp', () => {
  it('uses distinct codes around the fixed instant (guards the tests below)', () => {
    const codes = [-2, -1, 0, 1, 2].map(codeAt);
    expect(new Set(codes).size).toBe(5);
  });

  it('accepts the current step and one step either side, returning the matched step', () => {
    for (const offset of [-1, 0, 1]) {
      expect(checkTotp({ secret: SECRET, code: codeAt(offset), now: NOW, lastStep: 0 })).toEqual({ ok: true, step: STEP + offset });
    }
  });

  it('refuses codes two steps away', () => {
    for (const offset of [-2, 2]) {
      expect(checkTotp({ secret: SECRET, code: codeAt(offset), now: NOW, lastStep: 0 })).toEqual({ ok: false, reason: 'wrong-code' });
    }
  });

  it('honours the window parameter', () => {
    expect(checkTotp({ secret: SECRET, code: codeAt(1), now: NOW, lastStep: 0, window: 0 })).toEqual({ ok: false, reason: 'wrong-code' });
    expect(checkTotp({ secret: SECRET, code: codeAt(0), now: NOW, lastStep: 0, window: 0 })).toEqual({ ok: true, step: STEP });
    expect(checkTotp({ secret: SECRET, code: codeAt(2), now: NOW, lastStep: 0, window: 2 })).toEqual({ ok: true, step: STEP + 2 });
    expect(() => checkTotp({ secret: SECRET, code: codeAt(0), now: NOW, lastStep: 0, window: -1 })).toThrow(TypeError);
    expect(() => checkTotp({ secret: SECRET, code: codeAt(0), now: NOW, lastStep: 0, window: 11 })).toThrow(TypeError);
    expect(() => checkTotp({ secret: SECRET, code: codeAt(0), now: NOW, lastStep: 0, window: 0.5 })).toThrow(TypeError);
  });

  it('follows step boundaries to the millisecond', () => {
    const start = STEP * 30_000; // first ms of STEP
    const code = codeAt(-1);
    expect(checkTotp({ secret: SECRET, code, now: start + 29_999, lastStep: 0 })).toEqual({ ok: true, step: STEP - 1 });
    const next = start + 30_000; // STEP + 1 begins: STEP - 1 is now two steps back
    expect(checkTotp({ secret: SECRET, code, now: next - 1, lastStep: 0 })).toEqual({ ok: true, step: STEP - 1 });
    expect(checkTotp({ secret: SECRET, code, now: next, lastStep: 0 })).toEqual({ ok: false, reason: 'wrong-code' });
  });

  it('refuses the same code a second time', () => {
    const code = codeAt(0);
    const first = checkTotp({ secret: SECRET, code, now: NOW, lastStep: 0 });
    expect(first).toEqual({ ok: true, step: STEP });
    if (!first.ok) return;
    expect(checkTotp({ secret: SECRET, code, now: NOW + 5_000, lastStep: first.step })).toEqual({ ok: false, reason: 'replayed' });
    // Still refused in the next step, while the code is inside the window.
    expect(checkTotp({ secret: SECRET, code, now: NOW + 30_000, lastStep: first.step })).toEqual({ ok: false, reason: 'replayed' });
  });

  it('refuses an earlier code after a later one was accepted', () => {
    const later = checkTotp({ secret: SECRET, code: codeAt(1), now: NOW, lastStep: 0 });
    expect(later).toEqual({ ok: true, step: STEP + 1 });
    expect(checkTotp({ secret: SECRET, code: codeAt(0), now: NOW, lastStep: STEP + 1 })).toEqual({ ok: false, reason: 'replayed' });
    expect(checkTotp({ secret: SECRET, code: codeAt(-1), now: NOW, lastStep: STEP + 1 })).toEqual({ ok: false, reason: 'replayed' });
  });

  it('accepts a later code after an earlier one', () => {
    expect(checkTotp({ secret: SECRET, code: codeAt(0), now: NOW, lastStep: STEP - 1 })).toEqual({ ok: true, step: STEP });
    expect(checkTotp({ secret: SECRET, code: codeAt(1), now: NOW, lastStep: STEP })).toEqual({ ok: true, step: STEP + 1 });
  });

  it('reports a wrong code as wrong, not replayed, even when lastStep is ahead', () => {
    const wrong = codeAt(0) === '000000' ? '000001' : '000000';
    expect(checkTotp({ secret: SECRET, code: wrong, now: NOW, lastStep: STEP + 5 })).toEqual({ ok: false, reason: 'wrong-code' });
  });

  it('strips white space from the code', () => {
    const code = codeAt(0);
    for (const typed of [` ${code} `, `${code.slice(0, 3)} ${code.slice(3)}`, `${code.slice(0, 3)}\t${code.slice(3)}\n`]) {
      expect(checkTotp({ secret: SECRET, code: typed, now: NOW, lastStep: 0 })).toEqual({ ok: true, step: STEP });
    }
  });

  it('refuses malformed codes', () => {
    const code = codeAt(0);
    const fullWidth = code.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)));
    for (const typed of ['', '   ', code.slice(0, 5), `${code}0`, `${code.slice(0, 5)}a`, `${code.slice(0, 3)}-${code.slice(3)}`, fullWidth, '+12345', '1e5000', 'x'.repeat(10_000)]) {
      expect(checkTotp({ secret: SECRET, code: typed, now: NOW, lastStep: 0 }), typed.slice(0, 20)).toEqual({ ok: false, reason: 'malformed' });
    }
  });

  it('does not wrap around near the epoch', () => {
    const code = totpCodeForStep(SECRET, 0);
    expect(checkTotp({ secret: SECRET, code, now: 10_000, lastStep: -1 })).toEqual({ ok: true, step: 0 });
    expect(checkTotp({ secret: SECRET, code, now: 10_000, lastStep: 0 })).toEqual({ ok: false, reason: 'replayed' });
  });

  it('throws on programming errors rather than refusing the code', () => {
    expect(() => checkTotp({ secret: 'bad secret', code: '123456', now: NOW, lastStep: 0 })).toThrow(TypeError);
    expect(() => checkTotp({ secret: SECRET, code: '123456', now: Number.NaN, lastStep: 0 })).toThrow(TypeError);
    expect(() => checkTotp({ secret: SECRET, code: '123456', now: NOW, lastStep: Number.NaN })).toThrow(TypeError);
  });

  it('agrees with otpauth validate on which step matches', () => {
    const secret = newTotpSecret();
    const code = totpCodeForStep(secret, STEP - 1);
    expect(HOTP.validate({ token: code, secret: Secret.fromBase32(secret), counter: STEP, window: 1 })).toBe(-1);
    expect(checkTotp({ secret, code, now: NOW, lastStep: 0 })).toEqual({ ok: true, step: STEP - 1 });
  });
});

describe('totpUri', () => {
  it('is a Key URI for SHA1, 6 digits, 30 s', () => {
    const secret = newTotpSecret();
    const uri = totpUri({ issuer: 'ACME Gateway', account: 'alice@example.com', secret });
    const url = new URL(uri);
    expect(url.protocol).toBe('otpauth:');
    expect(url.host).toBe('totp');
    expect(decodeURIComponent(url.pathname)).toBe('/ACME Gateway:alice@example.com');
    expect(url.searchParams.get('secret')).toBe(secret);
    expect(url.searchParams.get('issuer')).toBe('ACME Gateway');
    expect(url.searchParams.get('algorithm')).toBe('SHA1');
    expect(url.searchParams.get('digits')).toBe('6');
    expect(url.searchParams.get('period')).toBe('30');
    expect(uri).not.toMatch(/\s/);
  });

  it('round-trips through an otpauth parser', () => {
    const secret = newTotpSecret();
    const parsed = URI.parse(totpUri({ issuer: 'Portcullis', account: 'bob', secret }));
    expect(parsed).toBeInstanceOf(TOTP);
    if (!(parsed instanceof TOTP)) return;
    expect(parsed.issuer).toBe('Portcullis');
    expect(parsed.label).toBe('bob');
    expect(parsed.secret.base32).toBe(secret);
    expect(parsed.generate({ timestamp: NOW })).toBe(totpCodeForStep(secret, STEP));
  });

  it('refuses an empty issuer or account, a colon in the issuer, and a bad secret', () => {
    const secret = newTotpSecret();
    expect(() => totpUri({ issuer: '', account: 'bob', secret })).toThrow(TypeError);
    expect(() => totpUri({ issuer: 'X', account: '', secret })).toThrow(TypeError);
    expect(() => totpUri({ issuer: 'a:b', account: 'bob', secret })).toThrow(/colon/);
    expect(() => totpUri({ issuer: 'X', account: 'bob', secret: '0189' })).toThrow(TypeError);
  });
});

describe('totpQrSvg', () => {
  it('is an inline SVG element encoding the URI', async () => {
    const uri = totpUri({ issuer: 'Portcullis', account: 'alice', secret: SECRET });
    const svg = await totpQrSvg(uri);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expect(svg).not.toContain('<?xml');
    expect(svg).not.toMatch(/<script|on\w+=|javascript:/i);
    expect(svg).toContain('width="240"');
    // The viewBox is the module count of the QR code for this URI plus the 4-module quiet zone each side.
    const size = createQr(uri, { errorCorrectionLevel: 'M' }).modules.size + 8;
    expect(svg).toContain(`viewBox="0 0 ${size} ${size}"`);
    expect(await totpQrSvg(uri)).toBe(svg);
    expect(await totpQrSvg(totpUri({ issuer: 'Portcullis', account: 'bob', secret: SECRET }))).not.toBe(svg);
  });
});
