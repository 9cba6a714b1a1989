/** Sends raw bytes over a real TCP socket and collects the raw answer (for malformed requests). */
import net from 'node:net';

export interface RawResponse {
  readonly text: string;
  /** Status of the first response, or 0 when the server closed without answering. */
  readonly status: number;
}

/** Writes `payload` and reads until the server closes or `timeoutMs` passes. */
export function rawRequest(port: number, payload: string | Buffer, timeoutMs = 3000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0 });
    };
    const timer = setTimeout(() => {
      socket.destroy();
      done();
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => {
      clearTimeout(timer);
      done();
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (chunks.length > 0) done();
      else reject(err);
    });
    socket.write(payload);
  });
}
