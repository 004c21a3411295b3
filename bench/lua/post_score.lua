-- POST /<level>/score?sessionkey=<key> with a rising score, rotating through many users' keys,
-- so that every request is a real upsert that improves one user's best on a fresh level.
-- Arguments (after --): <file with one session key a line> <level id>
local keys, level, counter = {}, "1", 0
local next_thread_id = 0
thread_id = 0 -- a global: setup() sets it in each thread's own Lua state

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

function init(args)
  for line in io.lines(args[1]) do keys[#keys + 1] = line end
  level = args[2]
end

function request()
  counter = counter + 1
  local key = keys[(counter + thread_id) % #keys + 1]
  -- Rising, and distinct per thread (up to 16): with one wrk thread, every post beats the
  -- user's previous best on the level.
  local score = counter * 16 + thread_id
  return wrk.format("POST", "/" .. level .. "/score?sessionkey=" .. key, nil, tostring(score))
end
