#!/usr/bin/env python3
"""Times the PDF entry portal's steps against a running hub, one client.

    scripts/bench-pdf-entry.py [--url http://127.0.0.1:8080] [-n 100]

Needs a data_entry user and a verifier configured in [pdf_entry.users]
(their logins and passwords in ENTRY_USER/ENTRY_PASS and
VERIFY_USER/VERIFY_PASS; defaults erin/pw-erin and victor/pw-victor) and
partner coa_lab. Each round uploads a new copy of
mappings/pdf/fixtures/coa_lab_lot_A.pdf (a comment appended after %%EOF),
enters the template's suggestions, verifies them, and reads the document
page and the list. Prints p50 and max per step. Standard library only.
"""
import argparse, http.cookiejar, json, os, statistics, time, urllib.error, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:8080")
ap.add_argument("-n", type=int, default=100)
ap.add_argument("--pdf", default=os.path.join(os.path.dirname(__file__), "..", "mappings/pdf/fixtures/coa_lab_lot_A.pdf"))
args = ap.parse_args()
B = args.url


def sess(u, p):
    cj = http.cookiejar.CookieJar()
    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cj))
    t = time.perf_counter()
    r = op.open(urllib.request.Request(B + "/pdf-entry/login", json.dumps({"user": u, "password": p}).encode(), {"content-type": "application/json"}))
    return (op, json.load(r)["csrf"]), time.perf_counter() - t


def call(s, path, body, ct="application/json"):
    op, csrf = s
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(B + path, data, {"content-type": ct, "x-csrf-token": csrf}, method="POST")
    t = time.perf_counter()
    try:
        r = op.open(req)
        st, out = r.status, r.read()
    except urllib.error.HTTPError as e:
        st, out = e.code, e.read()
    return st, json.loads(out or b"null"), time.perf_counter() - t


def timed_get(s, path):
    t = time.perf_counter()
    s[0].open(B + path).read()
    return time.perf_counter() - t


entry, tl = sess(os.environ.get("ENTRY_USER", "erin"), os.environ.get("ENTRY_PASS", "pw-erin"))
vuser, vpass = os.environ.get("VERIFY_USER", "victor"), os.environ.get("VERIFY_PASS", "pw-victor")
verifier, _ = sess(vuser, vpass)
pdf = open(args.pdf, "rb").read()
codes = ["STERILITY", "ENDOTOXIN", "VIABILITY", "CD3_PURITY", "MYCOPLASMA"]
T = {"login": [tl], "upload": [], "entry": [], "verify": [], "page": [], "list": []}
for n in range(args.n):
    st, up, dt = call(entry, "/pdf-entry/coa_lab/documents", pdf + b"\n%% copy %d\n" % n, "application/pdf")
    assert st == 201, (st, up)
    T["upload"].append(dt)
    d = up["document"]["id"]
    v = {"tests": [{"code": c} for c in codes]}
    for s in up["suggestions"]:
        f = s["field"]
        if f.startswith("test."):
            _, i, k = f.split(".")
            v["tests"][int(i)][k] = s["value"]
        else:
            v[f] = s["value"]
    st, r, dt = call(entry, f"/pdf-entry/documents/{d}/entry", v)
    assert st == 200, (st, r)
    T["entry"].append(dt)
    st, r, dt = call(verifier, f"/pdf-entry/documents/{d}/verification", {"values": v, "password": vpass})
    assert st == 200 and r["document"]["state"] == "verified", (st, r)
    T["verify"].append(dt)
    T["page"].append(timed_get(entry, f"/portal/documents/{d}"))
    T["list"].append(timed_get(entry, "/portal"))
for k, v in T.items():
    v = sorted(v)
    print(f"{k:8s} n={len(v):3d} p50={statistics.median(v) * 1000:7.1f} ms  max={v[-1] * 1000:7.1f} ms")
