-- create: POST /posts/ with a JSON body. The title is four words of the seed's vocabulary,
-- so the new posts (the newest of the feed from now on) match searches as the seeded do.
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")
local words = bench.vocabulary
local made = 0

local function word()
  return words[math.random(#words)]
end

function request()
  made = made + 1
  local body = string.format(
    '{"title": "%s %s %s %s", "content": "Written by the benchmark, connection %d, post %d.", "published": true}',
    word(), word(), word(), word(), bench.slot, made)
  return wrk.format("POST", "/posts/", bench.json_auth, body)
end
