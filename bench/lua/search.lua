-- search: GET /posts/?limit=10&search=<word>, one of eight words of the seed's vocabulary
-- (bench/seed.py; every word of it is in about 6 % of the titles).
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")
local words = {"python", "rust", "golang", "docker", "linux", "kafka", "mango", "tango"}

function request()
  return wrk.format("GET", "/posts/?limit=10&search=" .. words[math.random(#words)], bench.auth)
end
