-- vote: POST /vote/, each connection (its own user) alternating {"dir": 1} on a random
-- post and {"dir": 0} on that same post, so adding and removing are measured alike.
-- A connection sends its next request only after the previous answer, so the removal
-- always follows its own vote. Expected answers besides 201: 409 when the seed already
-- holds that user's vote on the post (the removal that follows then takes it away), and
-- 404 when a removal finds nothing (e.g. a run that stopped between the two).
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")
local voted_on = nil

function request()
  local body
  if voted_on then
    body = string.format('{"post_id": %d, "dir": 0}', voted_on)
    voted_on = nil
  else
    voted_on = math.random(1, bench.posts)
    body = string.format('{"post_id": %d, "dir": 1}', voted_on)
  end
  return wrk.format("POST", "/vote/", bench.json_auth, body)
end
