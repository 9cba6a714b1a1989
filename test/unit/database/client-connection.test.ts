import { describe, expect, it } from 'vitest';
import { mayReceivePassword } from '../../../src/database/client-connection.js';

describe('mayReceivePassword', () => {
  it.each([
    ['accepts a TLS connection from anywhere', { tls: true, clientIp: '203.0.113.7', allowCleartext: false }, true],
    ['accepts a cleartext connection from 127.0.0.1', { tls: false, clientIp: '127.0.0.1', allowCleartext: false }, true],
    ['accepts a cleartext connection from elsewhere in 127.0.0.0/8', { tls: false, clientIp: '127.10.0.2', allowCleartext: false }, true],
    ['accepts a cleartext connection from ::1', { tls: false, clientIp: '::1', allowCleartext: false }, true],
    ['accepts a cleartext connection from an IPv4-mapped loopback address', { tls: false, clientIp: '::ffff:127.0.0.1', allowCleartext: false }, true],
    ['refuses a cleartext connection from another host', { tls: false, clientIp: '203.0.113.7', allowCleartext: false }, false],
    ['refuses a cleartext connection from an IPv4-mapped remote address', { tls: false, clientIp: '::ffff:10.1.2.3', allowCleartext: false }, false],
    ['refuses a cleartext connection with an unknown address', { tls: false, clientIp: '', allowCleartext: false }, false],
    ['accepts a cleartext connection from another host when the database allows it', { tls: false, clientIp: '203.0.113.7', allowCleartext: true }, true],
  ])('%s', (_name, c, expected) => {
    expect(mayReceivePassword(c)).toBe(expected);
  });
});
