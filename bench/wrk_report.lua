-- wrk script for the m2mauth benchmark: the request comes from environment
-- variables, non-200 answers are counted, and done() prints one JSON line.
--   BENCH_METHOD (GET|POST), BENCH_BODY, BENCH_AUTHORIZATION (optional)
--   BENCH_BODY_FILE (optional): one body per line, each sent once (a request
--   that must not repeat, like a single-use client assertion); thread i of n
--   takes lines i, i+n, ...; a thread that runs out starts again, and the
--   repeats are refused and counted as non-200.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY") or ""
if body ~= "" or (os.getenv("BENCH_BODY_FILE") or "") ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local authorization = os.getenv("BENCH_AUTHORIZATION") or ""
if authorization ~= "" then
   wrk.headers["Authorization"] = authorization
end

local threads = {}
local body_file = os.getenv("BENCH_BODY_FILE") or ""

function setup(thread)
   thread:set("index", #threads)
   thread:set("total_threads", tonumber(os.getenv("BENCH_THREADS") or "1"))
   table.insert(threads, thread)
end

function init(args)
   non200 = 0
   first_bad = ""
   bodies = {}
   next_body = 1
   if body_file ~= "" then
      local n = 0
      for line in io.lines(body_file) do
         if n % total_threads == index then
            table.insert(bodies, line)
         end
         n = n + 1
      end
   end
end

-- Defined only with a body file: otherwise wrk sends its one prepared request,
-- with no Lua call per request.
if body_file ~= "" then
   function request()
      local body = bodies[next_body]
      next_body = next_body % #bodies + 1
      return wrk.format(nil, nil, nil, body)
   end
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      if first_bad == "" then
         first_bad = tostring(status)
      end
   end
end

function done(summary, latency, requests)
   local non200_total = 0
   local bad = ""
   for _, thread in ipairs(threads) do
      non200_total = non200_total + thread:get("non200")
      local status = thread:get("first_bad")
      if bad == "" and status ~= nil then
         bad = status
      end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"non200":%d,"first_bad_status":"%s",' ..
      '"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, non200_total, bad,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
