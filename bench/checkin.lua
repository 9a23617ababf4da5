-- wrk script: each request is a check-in of a different device, with a rising seq.
-- The device list ("uid token installed-json" per line) comes from the file named in FLEET_TOKENS:
-- each device reports what it runs (the steady state), so the load measures the everyday check-in.
local devices = {}
local seqs = {}
local index = 0
local thread_id = 0
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local path = os.getenv("FLEET_TOKENS")
  local threads = tonumber(os.getenv("FLEET_THREADS") or "1")
  local n = 0
  for line in io.lines(path) do
    -- Each thread takes every k-th device, so threads never send the same device.
    if n % threads == id then
      local uid, token, installed = line:match("^(%S+) (%S+) (%S+)$")
      devices[#devices + 1] = {uid, token, installed}
    end
    n = n + 1
  end
  index = math.random(#devices)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  index = index % #devices + 1
  local d = devices[index]
  local seq = (seqs[index] or os.time() * 10) + 1
  seqs[index] = seq
  local crashes = 0
  if math.random() < 0.01 then crashes = 1 end
  local body = string.format(
    '{"seq":%d,"installed":%s,' ..
    '"health":{"interval_s":900,"crashes":%d,"failed_health_checks":0,"reboots":0,"app_restarts":0}}',
    seq, d[3], crashes)
  wrk.headers["Authorization"] = "Bearer " .. d[2]
  return wrk.format("POST", "/api/v1/devices/" .. d[1] .. "/checkin", wrk.headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write +
                 summary.errors.status + summary.errors.timeout
  io.stderr:write(string.format(
    'WRKJSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"errors":%d,"non_2xx":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, errors, summary.errors.status))
end
