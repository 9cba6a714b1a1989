import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createMemoryStore } from '../../../src/store/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('createMemoryStore', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires an entry exactly when its time to live has passed', async () => {
    let t = 1000;
    const store = createMemoryStore({ now: () => t });
    await store.set('a', 'v', 100);
    t = 1099;
    expect(await store.get('a')).toBe('v');
    t = 1100;
    expect(await store.get('a')).toBeUndefined();
    await store.close();
  });

  it('rounds a fractional time to live up to whole milliseconds', async () => {
    let t = 0;
    const store = createMemoryStore({ now: () => t });
    await store.set('a', 'v', 0.2);
    t = 0.9;
    expect(await store.get('a')).toBe('v');
    t = 1;
    expect(await store.get('a')).toBeUndefined();
    await store.close();
  });

  it('drops an expired entry when it is read', async () => {
    let t = 0;
    const store = createMemoryStore({ now: () => t });
    await store.set('a', 'v', 100);
    t = 200;
    expect(store.entryCount()).toBe(1);
    expect(await store.get('a')).toBeUndefined();
    expect(store.entryCount()).toBe(0);
    await store.close();
  });

  it('sweeps expired entries that nobody reads again', async () => {
    vi.useFakeTimers();
    let t = 0;
    const store = createMemoryStore({ now: () => t, sweepIntervalMs: 1000 });
    for (let i = 0; i < 100; i++) await store.set(`gone:${i}`, 'v', 500);
    await store.set('kept', 'v', 10_000);
    await store.addToSet('set', 'm', 500);
    await store.increment('counter', 500);
    expect(store.entryCount()).toBe(103);
    t = 600;
    vi.advanceTimersByTime(1000);
    expect(store.entryCount()).toBe(1);
    expect(await store.get('kept')).toBe('v');
    await store.close();
  });

  it('stops its sweep timer on close', async () => {
    vi.useFakeTimers();
    const store = createMemoryStore();
    expect(vi.getTimerCount()).toBe(1);
    await store.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not keep the process alive', () => {
    const script = "import { createMemoryStore } from './src/store/index.js'; createMemoryStore();";
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      timeout: 15_000,
      encoding: 'utf8',
    });
    expect(result.signal).toBeNull();
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('reports its kind as memory', async () => {
    const store = createMemoryStore();
    expect(store.kind).toBe('memory');
    await store.close();
  });
});
