-- list: GET /posts/?limit=10&skip=<0..990>, a page somewhere in the newest thousand posts.
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")

function request()
  return wrk.format("GET", "/posts/?limit=10&skip=" .. math.random(0, 990), bench.auth)
end
