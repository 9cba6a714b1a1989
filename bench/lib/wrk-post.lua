-- wrk POST with a 1 MiB body per request (sent with Content-Length); the upstream answers the
-- number of body bytes it received, and every answer that is not exactly "1048576" counts as bad.
local size = 1048576
wrk.method = "POST"
wrk.body = string.rep("a", size)
wrk.headers["Content-Type"] = "application/octet-stream"

local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) bad = 0 end
response = function(status, headers, body)
  if status ~= 200 or body ~= tostring(size) then bad = bad + 1 end
end

done = function(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + (t:get("bad") or 0) end
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"bad":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, b))
end
