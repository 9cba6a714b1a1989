import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../../src/config/index.js';

const COMMITTED = join(import.meta.dirname, '../../../config/portcullis.schema.json');

describe('configJsonSchema', () => {
  it('matches the committed config/portcullis.schema.json', () => {
    const fresh = `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
    const committed = readFileSync(COMMITTED, 'utf8');
    expect(
      committed === fresh,
      'config/portcullis.schema.json is stale; regenerate it with: npm run build && node bin/portcullis.js config schema > config/portcullis.schema.json',
    ).toBe(true);
  });

  it('describes the file for editors', () => {
    const schema = configJsonSchema();
    expect(schema).toMatchObject({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $id: 'urn:portcullis:config:v1',
      title: 'Portcullis configuration',
      type: 'object',
      additionalProperties: false,
    });
    expect(Object.keys(schema.properties as object)).toEqual(['server', 'store', 'identity', 'mfa', 'audit', 'routes', 'databases']);
  });

  it('lets constrained values be written as ${VAR} references', () => {
    const schema = configJsonSchema() as { properties: { server: { properties: Record<string, { anyOf?: unknown[] }> } } };
    expect(schema.properties.server.properties.instance_id?.anyOf).toContainEqual({ $ref: '#/$defs/envReference' });
    expect(schema.properties.server.properties.listen?.anyOf).toContainEqual({ $ref: '#/$defs/envReference' });
  });
});
