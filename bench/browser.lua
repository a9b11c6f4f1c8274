-- wrk: requests as a browser sends them (eleven fields, ~600 bytes) for a different
-- target each time, so no request line or target repeats within 100,000 requests
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "en-GB,en;q=0.5"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd"
wrk.headers["Referer"] = "http://127.0.0.1/catalogue/index.html"
wrk.headers["Cookie"] = "session=4f1b9c2a7e3d4b8f9a6c5e2d1f0b3a7c; theme=dark; lang=en"
wrk.headers["Upgrade-Insecure-Requests"] = "1"
wrk.headers["Sec-Fetch-Dest"] = "document"
wrk.headers["Sec-Fetch-Mode"] = "navigate"
wrk.headers["Sec-Fetch-Site"] = "same-origin"

local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/catalogue/item/" .. n .. "?colour=blue&size=" .. (n % 7))
end
