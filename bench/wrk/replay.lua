-- Replays pre-signed GitHub webhook deliveries, each exactly once, then stops.
--
-- Environment:
--   BENCH_REQUESTS  file with one delivery per line: <delivery id> TAB <X-Hub-Signature-256> TAB <JSON body>
--   BENCH_EVENT     X-GitHub-Event value (default issue_comment)
--   BENCH_DONE      file written when the last response arrived: "<start ns> <end ns>" (wall clock
--                   of the first request and of the last response); the caller then stops wrk with
--                   SIGINT (wrk itself always sleeps for its -d duration)
-- Run with one thread (-t1) so that "each exactly once" holds; the URL's path is the webhook path.
-- After the last delivery is sent, idle connections resend earlier deliveries (redeliveries)
-- until the last response arrives; the thread stops when as many responses as deliveries came back.
-- done() prints one JSON line: counts, duration, latency percentiles (microseconds), statuses.

local requests = {}
local total = 0
local sent = 0
local responses = 0
statuses = {}
local threads = {}
local started_ns = nil

local function now_ns()
  local p = io.popen("date +%s%N")
  local t = p:read("*l")
  p:close()
  return t
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  local event = os.getenv("BENCH_EVENT") or "issue_comment"
  for line in io.lines(path) do
    local id, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if id then
      local headers = {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "GitHub-Hookshot/bench",
        ["X-GitHub-Event"] = event,
        ["X-GitHub-Delivery"] = id,
        ["X-Hub-Signature-256"] = sig,
      }
      requests[#requests + 1] = wrk.format("POST", nil, headers, body)
    end
  end
  total = #requests
end

function request()
  if started_ns == nil then
    started_ns = now_ns()
  end
  sent = sent + 1
  return requests[((sent - 1) % total) + 1]
end

function response(status, headers, body)
  responses = responses + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if responses == total then
    local ended_ns = now_ns()
    local f = io.open(os.getenv("BENCH_DONE"), "w")
    f:write(started_ns .. " " .. ended_ns .. "\n")
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests_)
  local st = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do
        table.insert(st, string.format('"%s":%d', k, v))
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"statuses":{%s}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(st, ",")))
end
