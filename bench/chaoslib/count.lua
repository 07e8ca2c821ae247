-- Counts wrk's responses by status, per thread; done() prints the totals
-- on one line the chaos script parses ("status 200=1234 502=3").
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
end

function response(status, headers, body)
   counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      for status, n in pairs(t:get("counts")) do
         total[status] = (total[status] or 0) + n
      end
   end
   local out = {}
   for status, n in pairs(total) do
      table.insert(out, status .. "=" .. n)
   end
   table.sort(out)
   io.write("status " .. table.concat(out, " ") .. "\n")
   io.write(string.format("p99_us %d\n", latency:percentile(99)))
end
