-- Load script for wrk, configured by environment variables (bench/run.py sets them):
--   BENCH_METHOD     GET, HEAD or PUT (default GET)
--   BENCH_PATH       the request path; for PUT the prefix of the paths written
--   BENCH_BODY_SIZE  PUT body size in bytes
--   BENCH_ROTATE     PUT: 0 = a new path per request (creates), N > 0 = cycle over N
--                    paths per thread (replaces after the first N)
--   BENCH_HEADERS    extra request headers, "Name: value" lines separated by newlines
-- done() prints one line "WRK_RESULT {json}": counts, errors and latency percentiles.

local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body_size = tonumber(os.getenv("BENCH_BODY_SIZE") or "0")
local rotate = tonumber(os.getenv("BENCH_ROTATE") or "0")
local extra_headers = os.getenv("BENCH_HEADERS") or ""

local counter = 0

function setup(thread)
   thread:set("thread_id", counter)
   counter = counter + 1
end

function init(args)
   for line in string.gmatch(extra_headers, "[^\n]+") do
      local name, value = string.match(line, "^([^:]+):%s*(.*)$")
      if name then
         wrk.headers[name] = value
      end
   end
   sequence = 0
   if method == "PUT" then
      body = string.rep("x", body_size)
   else
      fixed = wrk.format(method, path)
   end
end

function request()
   if method ~= "PUT" then
      return fixed
   end
   sequence = sequence + 1
   local index = sequence
   if rotate > 0 then
      index = sequence % rotate
   end
   return wrk.format("PUT", path .. "t" .. thread_id .. "-" .. index, nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %.0f, "bytes": %.0f, ' ..
      '"errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
      '"errors_status": %d, "errors_timeout": %d, ' ..
      '"p50_us": %.0f, "p99_us": %.0f, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean))
end
