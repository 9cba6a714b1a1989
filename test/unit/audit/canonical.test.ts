import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { canonicalBytes, canonicalJson, hashedText, leafHash, NonCanonicalValueError } from '../../../src/audit/canonical.js';
import { clean, redactQuery } from '../../../src/audit/record.js';

interface Vectors {
  jcs_rfc8785: { input: string; output_utf8_hex: string; sort_example: { input_keys: string[]; sorted: string[] } };
}
const vectors = JSON.parse(readFileSync(new URL('../../../../shared/vectors/signatures-and-jcs.json', import.meta.url), 'utf8')) as Vectors;
interface MerkleVectors {
  hasher: { leaf_of_empty: string; leaf_L123456: string };
}
const rfc6962 = JSON.parse(readFileSync(new URL('../../../../shared/vectors/rfc6962.json', import.meta.url), 'utf8')) as MerkleVectors;

describe('canonicalJson', () => {
  it('prints the RFC 8785 example exactly', () => {
    const out = canonicalJson(JSON.parse(vectors.jcs_rfc8785.input));
    expect(Buffer.from(out ?? '', 'utf8').toString('hex')).toBe(vectors.jcs_rfc8785.output_utf8_hex);
  });

  it('sorts keys by UTF-16 code units as RFC 8785 requires', () => {
    const obj = Object.fromEntries(vectors.jcs_rfc8785.sort_example.input_keys.map((k) => [k, 1]));
    // (JSON.parse would reorder the integer-like key "1", so compare the text.)
    const expected = `{${vectors.jcs_rfc8785.sort_example.sorted.map((k) => `${JSON.stringify(k)}:1`).join(',')}}`;
    expect(canonicalJson(obj)).toBe(expected);
  });
});

describe('canonicalBytes', () => {
  it('refuses floats and non-finite numbers anywhere in a record', () => {
    for (const bad of [{ a: 1.5 }, { a: [1, Number.NaN] }, { a: { b: Infinity } }, { a: 2 ** 60 }]) {
      expect(() => canonicalBytes(bad)).toThrow(NonCanonicalValueError);
    }
  });

  it('omits undefined properties and keeps integers', () => {
    expect(canonicalBytes({ b: 2, a: undefined, c: [1, 'x'] }).toString()).toBe('{"b":2,"c":[1,"x"]}');
  });
});

describe('canonicalBytes against the reference serializer', () => {
  const reference = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string | undefined;
  const key = fc.oneof(fc.string(), fc.constantFrom('0', '1', '10', '9', '01', '-1', '4294967295', '4294967294', 'a', 'B', '\u00e9', '\ud83d\ude00', '\u20ac', '\r'), fc.string({ unit: 'binary', maxLength: 4 }));
  const leaf = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.maxSafeInteger(), fc.integer(), fc.boolean(), fc.constant(null), fc.constant(-0));
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 5 }),
    object: fc.dictionary(key, fc.oneof(tie('value'), fc.constant(undefined)), { maxKeys: 8 }),
  }));

  it('prints the same bytes for any record of strings, safe integers, booleans, null, arrays and objects', () => {
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 10 }), (record) => {
        expect(canonicalBytes(record).toString('utf8')).toBe(reference(record));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps the caller\'s object untouched, sorted or not, and the same answer for a sorted copy', () => {
    const unsorted = { b: { d: 1, c: [{ z: 1, a: 2 }] }, a: 'x', u: undefined };
    const text = canonicalBytes(unsorted).toString('utf8');
    expect(text).toBe('{"a":"x","b":{"c":[{"a":2,"z":1}],"d":1}}');
    expect(Object.keys(unsorted)).toEqual(['b', 'a', 'u']);
    expect(canonicalBytes({ a: 'x', b: { c: [{ a: 2, z: 1 }], d: 1 } }).toString('utf8')).toBe(text);
  });

  it('orders index-like keys as strings, as RFC 8785 does', () => {
    expect(canonicalBytes({ b: 1, 10: 2, 9: 3, a: { 2: 1, 1: 0 } }).toString('utf8')).toBe('{"10":2,"9":3,"a":{"1":0,"2":1},"b":1}');
  });

  it('names the path of a value it refuses, on either path', () => {
    expect(() => canonicalBytes({ a: { b: [1, 2.5] } })).toThrow('$.a.b[1]');
    expect(() => canonicalBytes({ 7: { b: [1, 2.5] } })).toThrow('$.7.b[1]');
    expect(() => canonicalBytes({ a: [undefined] })).toThrow(NonCanonicalValueError);
  });
});

describe('leafHash', () => {
  it('is SHA-256 of 0x00 followed by the bytes (RFC 9162)', () => {
    expect(leafHash(Buffer.alloc(0)).toString('hex')).toBe(rfc6962.hasher.leaf_of_empty);
    expect(leafHash(Buffer.from('L123456')).toString('hex')).toBe(rfc6962.hasher.leaf_L123456);
  });
});

describe('hashedText', () => {
  it('gives the text as UTF-8 and its RFC 9162 leaf hash, as leafHash does', () => {
    expect(hashedText('L123456').leaf.toString('hex')).toBe(rfc6962.hasher.leaf_L123456);
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const { bytes, leaf } = hashedText(text);
        expect(bytes.equals(Buffer.from(text, 'utf8'))).toBe(true);
        expect(leaf.equals(leafHash(Buffer.from(text, 'utf8')))).toBe(true);
      }),
    );
  });
});

describe('clean', () => {
  it('replaces lone surrogates and caps long strings', () => {
    expect(clean('a\uD800b')).toBe('a\uFFFDb');
    expect(clean('x'.repeat(10), 5)).toBe('xxxx…');
    expect(clean(`${'x'.repeat(3)}\uD83D\uDE00`, 5)).toBe('xxx\uD83D\uDE00');
    expect(clean(`${'x'.repeat(3)}\uD83D\uDE00y`, 5)).toBe('xxx\uFFFD…');
  });

  it('neutralizes what JSON leaves raw but readers take for a line break or a reordering', () => {
    expect(clean('a\u0085b\u2028c\u2029d\u202Ee\u2066f\u0080g')).toBe('a\uFFFDb\uFFFDc\uFFFDd\uFFFDe\uFFFDf\uFFFDg');
    expect(clean('tab\tand\nnewline stay (JSON escapes them)')).toBe('tab\tand\nnewline stay (JSON escapes them)');
    expect(clean('café ü ☃')).toBe('café ü ☃');
  });
});

describe('redactQuery', () => {
  it.each([
    ['a=1&token=abc&b=2', 'a=1&token=REDACTED&b=2'],
    ['TOKEN=abc', 'TOKEN=REDACTED'],
    ['%74oken=abc', '%74oken=REDACTED'],
    ['password', 'password=REDACTED'],
    ['tokenx=1', 'tokenx=1'],
    ['', ''],
    ['jwt=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln&page=2', 'jwt=REDACTED&page=2'],
    ['auth=Bearer%20eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln', 'auth=REDACTED'],
    ['x=eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.', 'x=REDACTED'],
    ['x=eyJ', 'x=eyJ'],
    ['name=eyJust.a.name', 'name=eyJust.a.name'],
  ])('turns %j into %j', (q, expected) => {
    expect(redactQuery(q, ['token', 'password'])).toBe(expected);
  });
});
