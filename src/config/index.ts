export { configSchema, parseDuration, type Config, type RouteConfig, type RuleConfig, type AllowConfig, type MfaRequirementConfig, type DatabaseConfig } from './schema.js';
