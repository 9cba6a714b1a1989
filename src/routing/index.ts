export { canonicalizeHost, formatHost, sameHost, type CanonicalHost } from './host.js';
export {
  normalizeTarget,
  normalizePathSegment,
  type TargetResult,
  type NormalizedTarget,
  type TargetRejectReason,
  type HostRejectReason,
  type SegmentResult,
} from './normalize-target.js';
export { compileRoutes, type RouteTable, type RouteMatch } from './route-table.js';
