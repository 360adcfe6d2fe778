-- get: GET /posts/<id>, a random seeded post.
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")

function request()
  return wrk.format("GET", "/posts/" .. math.random(1, bench.posts), bench.auth)
end
