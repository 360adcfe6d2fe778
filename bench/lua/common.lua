-- Helpers for the wrk scenario scripts of bench/driver.py; each script loads this file
-- with dofile() and then defines only request().
--
-- The driver runs wrk with one connection per thread (-t C -c C), so "a thread" here is
-- "a connection": each one gets its own slot number and the token of its own user.
-- Settings come from the environment the driver sets:
--   AGORA_BENCH_LUA     this directory
--   AGORA_BENCH_TOKENS  a file of "user_id<TAB>token" lines, one per logged-in user
--   AGORA_BENCH_POSTS   seeded posts (ids 1..N)      AGORA_BENCH_USERS  seeded users (ids 1..N)
--   AGORA_BENCH_PASSWORD  the seeded users' password
-- done() prints one line "AGORA_BENCH_RESULT {json}" that the driver reads.

local bench = {
  posts = tonumber(os.getenv("AGORA_BENCH_POSTS") or "1000"),
  users = tonumber(os.getenv("AGORA_BENCH_USERS") or "100"),
  password = os.getenv("AGORA_BENCH_PASSWORD") or "password123",
}

-- bench/seed.py's 64-word vocabulary: titles made of it look like the seeded ones.
bench.vocabulary = {
  "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris", "jasper",
  "kestrel", "lagoon", "meadow", "nectar", "onyx", "pepper", "quartz", "raven", "sable", "tundra",
  "umber", "violet", "willow", "xenon", "yarrow", "zephyr", "acorn", "birch", "cobalt", "dune",
  "eagle", "fern", "python", "rust", "golang", "kotlin", "swift", "ruby", "haskell", "scala",
  "elixir", "erlang", "ocaml", "fastapi", "django", "flask", "postgres", "redis", "kafka",
  "docker", "linux", "debian", "ubuntu", "alpine", "nginx", "mango", "tango", "lemon", "peach",
  "plum", "cherry", "grape", "melon", "olive"
}

-- Setup phase (wrk's main Lua state): hand every thread a slot and a token.
local threads = {}
local tokens = nil

local function read_tokens()
  local found = {}
  local path = os.getenv("AGORA_BENCH_TOKENS")
  if path and path ~= "" then
    for line in io.lines(path) do
      local user, token = line:match("^(%d+)\t(%S+)$")
      if user then
        found[#found + 1] = {user = tonumber(user), token = token}
      end
    end
  end
  return found
end

function setup(thread)
  tokens = tokens or read_tokens()
  local slot = #threads + 1
  threads[slot] = thread
  thread:set("slot", slot)
  if #tokens > 0 then
    local mine = tokens[(slot - 1) % #tokens + 1]
    thread:set("token", mine.token)
    thread:set("token_user", mine.user)
  end
end

-- Running phase (one Lua state per thread, so per connection).
codes = {}

function init(args)
  -- Different numbers on every connection and in every run.
  math.randomseed(os.time() + (slot or 0) * 104729 + math.floor(os.clock() * 1000000))
  for _ = 1, 8 do
    math.random()
  end
  bench.auth = {["Authorization"] = "Bearer " .. (token or "none")}
  bench.json_auth = {["Authorization"] = "Bearer " .. (token or "none"), ["Content-Type"] = "application/json"}
  bench.slot = slot or 0
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

-- Done phase (main state again): merge the threads' status counts, print one JSON line.
function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("codes") or {}
    for status, n in pairs(counted) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local errors = summary.errors
  io.write(string.format(
    'AGORA_BENCH_RESULT {"duration_us": %d, "requests": %d, "statuses": {%s}, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.duration, summary.requests, table.concat(parts, ", "),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end

return bench
