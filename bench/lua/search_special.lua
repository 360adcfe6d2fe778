-- search_special: GET /posts/?<query of the "special" class> (bench/lua/search_classes.lua).
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")
local classes = dofile(os.getenv("AGORA_BENCH_LUA") .. "/search_classes.lua")

function request()
  return wrk.format("GET", "/posts/?" .. classes.special(bench), bench.auth)
end
