#!/usr/bin/env python3
"""Compare two cairnd daemons' history answers: an upgrade check.

Run an old and a new cairnd on copies of the same data directory (the new one
migrates its copy at start-up), then:

    python3 bench/compare_history.py OLD_PORT OLD_PASSWORD_FILE NEW_PORT NEW_PASSWORD_FILE

It logs in as admin on both, reads 24 h, 6 h and 30 d of six metrics for every
twentieth node or so and the 24 h fleet chart with the same from/to on both,
and fails unless bucket times are identical and every value agrees to within
the 4-decimal rounding of chart replies (docs/API.md). Only 127.0.0.1.
"""
import http.client
import json
import sys
import time


def login(port, pwfile):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    pw = open(pwfile).read().strip()
    c.request("POST", "/api/v1/auth/login", json.dumps({"username": "admin", "password": pw}),
              {"Content-Type": "application/json"})
    tok = json.loads(c.getresponse().read())["token"]
    return c, {"Authorization": "Bearer " + tok}


def get(cx, path):
    c, headers = cx
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"GET {path}: {r.status} {body[:200]!r}")
    return json.loads(body)


def main():
    old = login(int(sys.argv[1]), sys.argv[2])
    new = login(int(sys.argv[3]), sys.argv[4])
    nodes = sorted(n["id"] for n in get(old, "/api/v1/nodes?limit=1000")["data"])
    to = int(time.time())
    windows = points = 0
    worst = 0.0
    for nid in nodes[:: max(1, len(nodes) // 25)]:
        for hours in (24, 6, 30 * 24):
            q = (f"/api/v1/nodes/{nid}/history?metrics=cpu,memory,disk,net_rx,load1,temperature"
                 f"&from={to - hours * 3600}&to={to}")
            a, b = get(old, q), get(new, q)
            assert a["timestamps"] == b["timestamps"], (nid, hours)
            assert (a["source"], a["resolution_s"]) == (b["source"], b["resolution_s"]), (nid, hours)
            for m in a["series"]:
                for f in ("avg", "min", "max"):
                    for x, y in zip(a["series"][m][f], b["series"][m][f]):
                        assert (x is None) == (y is None), (nid, m, f, x, y)
                        if x is not None:
                            d = abs(x - y)
                            worst = max(worst, d)
                            points += 1
                            # 4 places, plus float spacing for very large values.
                            assert d <= 5.01e-5 + abs(x) * 1e-15, (nid, m, f, x, y)
            windows += 1
    q = f"/api/v1/charts?metric=cpu&from={to - 86400}&to={to}"
    a, b = get(old, q), get(new, q)
    assert [n["timestamps"] for n in a["nodes"]] == [n["timestamps"] for n in b["nodes"]]
    print(f"{windows} node windows and a fleet chart of {len(a['nodes'])} nodes agree; "
          f"{points} values, largest difference {worst:.2e}")


if __name__ == "__main__":
    main()
