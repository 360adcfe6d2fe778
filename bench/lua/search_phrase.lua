-- search_phrase: GET /posts/?<query of the "phrase" class> (bench/lua/search_classes.lua).
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")
local classes = dofile(os.getenv("AGORA_BENCH_LUA") .. "/search_classes.lua")

function request()
  return wrk.format("GET", "/posts/?" .. classes.phrase(bench), bench.auth)
end
