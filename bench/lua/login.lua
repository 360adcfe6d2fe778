-- login: POST /login as a random seeded user (form fields, as OAuth2's password flow).
local bench = dofile(os.getenv("AGORA_BENCH_LUA") .. "/common.lua")
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}

function request()
  local body = "username=user" .. math.random(1, bench.users) .. "%40example.com&password=" .. bench.password
  return wrk.format("POST", "/login", headers, body)
end
