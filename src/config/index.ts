export {
  configSchema,
  parseDuration,
  type Config,
  type RouteConfig,
  type RuleConfig,
  type AllowConfig,
  type MfaRequirementConfig,
  type DatabaseConfig,
} from './schema.js';
export { loadConfigText, loadConfigFile, formatIssues, type ConfigIssue, type LoadResult } from './load.js';
export { substituteEnv, type EnvLookup, type SubstitutionResult } from './env-substitution.js';
export { configJsonSchema } from './json-schema.js';
export { watchConfigFile, type ConfigWatcher, type WatchConfigOptions } from './watch.js';
