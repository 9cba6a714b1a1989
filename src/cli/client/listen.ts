/** Listening for the command line's local servers (the login callback, the tunnels). */
import type { AddressInfo, Server } from 'node:net';

/** Starts `server` listening on `host:port` (0: any free port); resolves the bound port, rejects when it cannot listen. */
export function listenOn(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
