-- POST load for wrk (bench/harness.py runs it):
--   wrk -t1 -c64 -d30s -s bench/wrk.lua URL -- MODE MAX BATCH PREFIX EXPECT
-- MODE: single (binary-mode CloudEvent), batch (BATCH events per application/cloudevents-batch+json
-- request), push (a binary-mode event as the gateway pushes it, for the subscriber alone).
-- Every event id is PREFIX-thread-n[-k], unique per run (a repeated id would be a duplicate).
-- Each thread stops after MAX responses (then wrk is ended early); -d bounds the time. done()
-- prints one JSON line; its duration runs from the first request sent to the last answer.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
int getpid(void);
int kill(int pid, int sig);
]])
local timespec = ffi.new("bench_timespec")

local function now()
   ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
   return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   mode = args[1] or "single"
   max_responses = tonumber(args[2] or "0")
   batch = tonumber(args[3] or "1")
   prefix = (args[4] or "w") .. "-" .. tid .. "-"
   expect = tonumber(args[5] or "202")
   n = 0
   responses = 0
   ok = 0
   bad = 0
   last_bad = 0
   first_sent = 0
   last_answer = 0
end

local single_body = '{"n": 1}'

local function binary(id)
   return {
      ["ce-specversion"] = "1.0",
      ["ce-id"] = id,
      ["ce-source"] = "/bench",
      ["ce-type"] = "bench.event",
      ["content-type"] = "application/json",
   }
end

function request()
   n = n + 1
   if first_sent == 0 then
      first_sent = now()
   end
   if mode == "batch" then
      local parts = {}
      for k = 1, batch do
         parts[k] = '{"specversion":"1.0","id":"' .. prefix .. n .. "-" .. k
            .. '","source":"/bench","type":"bench.event","datacontenttype":"application/json",'
            .. '"data":{"n":1}}'
      end
      local headers = { ["content-type"] = "application/cloudevents-batch+json" }
      return wrk.format("POST", nil, headers, "[" .. table.concat(parts, ",") .. "]")
   end
   return wrk.format("POST", nil, binary(prefix .. n), single_body)
end

function response(status, headers, body)
   responses = responses + 1
   if status == expect then
      ok = ok + 1
   else
      bad = bad + 1
      last_bad = status
   end
   last_answer = now()
   if max_responses > 0 and responses == max_responses then
      -- Done: stop this thread, and end wrk's timed sleep (SIGINT) instead of waiting out -d.
      wrk.thread:stop()
      ffi.C.kill(ffi.C.getpid(), 2)
   end
end

function done(summary, latency, requests)
   local ok_total, bad_total, last = 0, 0, 0
   local first, final = math.huge, 0
   for _, thread in ipairs(threads) do
      first = math.min(first, thread:get("first_sent"))
      final = math.max(final, thread:get("last_answer"))
      ok_total = ok_total + thread:get("ok")
      bad_total = bad_total + thread:get("bad")
      if thread:get("last_bad") ~= 0 then
         last = thread:get("last_bad")
      end
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests":%d,"ok":%d,"statuses":{"%d":%d},"duration_us":%d,"p50_us":%d,"p99_us":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, ok_total, last, bad_total, (final - first) * 1e6,
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.status, e.timeout))
end
