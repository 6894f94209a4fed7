#!/usr/bin/env python3
"""The ticket sale of examples/seckill, from Python's standard library
against lockd replicas: buyers race for a few tickets under one lock.

Each buyer opens a client session at a random replica, acquires the lock
"tickets" with it (waiting in the queue), takes a ticket if any is left,
and releases the lease by its key at another random replica. A replica
that does not answer is simply skipped for the next. The stock is a
fenced resource: it refuses a write whose token is below one it has seen.

    python3 examples/lockd/ticketsale.py \
        --replicas http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003

prints SUMMARY tickets=5 sold=5 buyers=20 oversold=0 (and exits 1 if any
ticket was oversold or a buyer failed).
"""

import argparse
import json
import random
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request


class Lockd:
    """A client of a lockd cluster: every call goes to a random replica,
    and to another when one does not answer."""

    def __init__(self, replicas, token=None):
        self.replicas = replicas
        self.token = token

    def call(self, method, path, timeout=30):
        last = None
        for base in random.sample(self.replicas, len(self.replicas)) * 3:
            req = urllib.request.Request(base + path, method=method)
            if self.token:
                req.add_header("Authorization", "Bearer " + self.token)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as res:
                    return res.status, json.load(res)
            except urllib.error.HTTPError as e:
                body = json.load(e)
                if e.code != 503:  # an answer: held, not held, timeout...
                    return e.code, body
                last = body  # no quorum or starting: try another replica
            except (urllib.error.URLError, OSError) as e:
                last = {"error": "unreachable", "detail": str(e)}
        return 503, last

    def open_session(self, ttl="10s", owner=""):
        q = urllib.parse.urlencode({"ttl": ttl, "owner": owner})
        code, body = self.call("POST", "/v1/sessions?" + q)
        if code != 200:
            raise RuntimeError("open session: %d %s" % (code, body))
        return body["session"]

    def acquire(self, name, session, wait="20s"):
        q = urllib.parse.urlencode({"session": session, "wait": wait})
        return self.call("POST", "/v1/locks/%s?%s" % (urllib.parse.quote(name, safe=""), q))

    def release(self, name, lease):
        q = urllib.parse.urlencode({"lease": lease})
        return self.call("DELETE", "/v1/locks/%s?%s" % (urllib.parse.quote(name, safe=""), q))

    def close_session(self, session):
        return self.call("DELETE", "/v1/sessions/" + session)


class Stock:
    """The protected resource: a ticket count that refuses stale tokens."""

    def __init__(self, tickets):
        self.mu = threading.Lock()
        self.left = tickets
        self.sold = 0
        self.fence = 0

    def take(self, token):
        with self.mu:
            if token < self.fence:
                return False  # a holder whose lease ended: refused
            self.fence = token
            if self.left <= 0:
                return False
            self.left -= 1
            self.sold += 1
            return True


def buyer(n, lockd, stock, results):
    try:
        session = lockd.open_session(owner="buyer-%d" % n)
        code, grant = lockd.acquire("tickets", session)
        if code != 200:
            results[n] = "acquire: %d %s" % (code, grant)
            return
        got = stock.take(grant["token"])
        code, body = lockd.release("tickets", grant["lease"])
        lockd.close_session(session)
        results[n] = "bought" if got else "sold out"
        if code != 200:
            results[n] = "release: %d %s" % (code, body)
    except Exception as e:  # report it with the others
        results[n] = "error: %s" % e


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", default="http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003")
    p.add_argument("--buyers", type=int, default=20)
    p.add_argument("--tickets", type=int, default=5)
    p.add_argument("--token", default=None, help="a bearer token, if lockd asks for one")
    args = p.parse_args()
    lockd = Lockd(args.replicas.split(","), args.token)
    stock = Stock(args.tickets)
    results = {}
    threads = [threading.Thread(target=buyer, args=(n, lockd, stock, results)) for n in range(args.buyers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = {n: r for n, r in results.items() if r not in ("bought", "sold out")}
    for n, r in sorted(failed.items()):
        print("buyer %d: %s" % (n, r), file=sys.stderr)
    oversold = max(0, stock.sold - args.tickets)
    print("SUMMARY tickets=%d sold=%d buyers=%d oversold=%d failed=%d"
          % (args.tickets, stock.sold, args.buyers, oversold, len(failed)))
    sys.exit(1 if oversold or failed else 0)


if __name__ == "__main__":
    main()
