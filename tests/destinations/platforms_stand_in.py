"""Engagement-platform stand-in for the destination tests: Braze's REST API as Braze documents
it (POST /users/track with attributes, events and purchases, at most 75 objects per request;
POST /users/delete with at most 50 users; bearer API keys; minor errors naming the object by
array and index) and CleverTap's (POST /1/upload with at most 1,000 profile or event records,
each with identity, ts and profileData or evtName and evtData; POST /1/delete/profiles.json;
the account id and passcode headers; unprocessed records echoed with their code and error);
for both, 429 with Retry-After and 5xx. It keeps what it was sent, so a test can count every
record delivered and compare.

Usage: platforms_stand_in.py --api-key KEY [--account-id ID --passcode P]
       [--throttle-every N] [--fail-every N] [--retry-after SECONDS] [--host ADDRESS]
Every Nth request is answered 429 (or 500) instead of being served. Prints the port first.
GET /_stats answers what it holds: requests served, the largest batch, each user's attributes,
every event and purchase with how many times its dedup key came, deletes, and for each 429
how long the client waited before its next request.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACK_LIMIT = 75
DELETE_LIMIT = 50
UPLOAD_LIMIT = 1000
CLEVERTAP_DELETE_LIMIT = 100


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.requests = 0
        self.served = 0
        self.max_batch = 0
        self.attributes = {}
        self.events = {}
        self.purchases = {}
        self.deleted = []
        self.throttled_at = None
        self.retry_after = args.retry_after
        self.gaps = []
        self.throttled = 0
        self.failed = 0


def user_of(obj):
    for field in ("external_id", "braze_id", "email", "phone"):
        if field in obj:
            return f"{field}:{obj[field]}"
    if "user_alias" in obj:
        alias = obj["user_alias"]
        return f"alias:{alias.get('alias_label')}:{alias.get('alias_name')}"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        state = self.server.state
        if self.path != "/_stats":
            return self.answer(404, {"message": "not found"})
        with state.lock:
            return self.answer(200, {
                "requests": state.requests,
                "served": state.served,
                "throttled": state.throttled,
                "failed": state.failed,
                "max_batch": state.max_batch,
                "attributes": state.attributes,
                "events": state.events,
                "purchases": state.purchases,
                "deleted": state.deleted,
                "gaps": state.gaps,
            })

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.startswith("/1/"):
            if (self.headers.get("X-CleverTap-Account-Id") != state.args.account_id
                    or self.headers.get("X-CleverTap-Passcode") != state.args.passcode):
                return self.answer(401, {"status": "fail", "error": "Invalid credentials",
                                         "code": 401})
        elif self.headers.get("Authorization") != f"Bearer {state.args.api_key}":
            return self.answer(401, {"message": "Invalid API key"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(400, {"message": "Invalid JSON"})
        with state.lock:
            now = time.monotonic()
            if state.throttled_at is not None:
                state.gaps.append(
                    {"asked": state.retry_after, "waited": round(now - state.throttled_at, 3)})
                state.throttled_at = None
            state.requests += 1
            n = state.requests
            if state.args.throttle_every and n % state.args.throttle_every == 0:
                state.throttled += 1
                state.throttled_at = now
                return self.answer(429, {"message": "Too many requests"},
                                   [("Retry-After", str(state.retry_after))])
            if state.args.fail_every and n % state.args.fail_every == 0:
                state.failed += 1
                return self.answer(503, {"message": "Service unavailable"})
            if self.path == "/users/track":
                return self.track(state, body)
            if self.path == "/users/delete":
                return self.delete(state, body)
            if self.path == "/1/upload":
                return self.upload(state, body)
            if self.path == "/1/delete/profiles.json":
                return self.delete_profiles(state, body)
        return self.answer(404, {"message": "not found"})

    def track(self, state, body):
        arrays = {name: body.get(name) or [] for name in ("attributes", "events", "purchases")}
        total = sum(len(a) for a in arrays.values())
        if total > TRACK_LIMIT:
            return self.answer(400, {
                "message": f"Too many objects: {total}; at most {TRACK_LIMIT} per request"})
        state.max_batch = max(state.max_batch, total)
        errors = []
        for name, objects in arrays.items():
            for index, obj in enumerate(objects):
                user = user_of(obj)
                if user is None:
                    errors.append({"type": "Missing user identifier", "input_array": name,
                                   "index": index})
                    continue
                if name == "attributes":
                    email = obj.get("email")
                    if email is not None and "@" not in str(email):
                        errors.append({"type": f"Invalid email address {email!r}",
                                       "input_array": name, "index": index})
                        continue
                    fields = state.attributes.setdefault(user, {})
                    for key, value in obj.items():
                        if key in ("external_id", "braze_id", "user_alias", "_update_existing_only"):
                            continue
                        if value is None:
                            fields.pop(key, None)
                        else:
                            fields[key] = value
                else:
                    key = (obj.get("properties") or {}).get("sluice_dedup_key")
                    kept = state.events if name == "events" else state.purchases
                    entry = kept.setdefault(str(key), {"user": user, "count": 0, "object": obj})
                    entry["count"] += 1
        state.served += 1
        answer = {"message": "success"}
        if errors:
            answer["errors"] = errors
        return self.answer(201, answer)

    def delete(self, state, body):
        users = []
        for field, kind in (("external_ids", "external_id"), ("braze_ids", "braze_id"),
                            ("email_addresses", "email"), ("phone_numbers", "phone")):
            users.extend(f"{kind}:{v}" for v in body.get(field) or [])
        for alias in body.get("user_aliases") or []:
            users.append(f"alias:{alias.get('alias_label')}:{alias.get('alias_name')}")
        if len(users) > DELETE_LIMIT:
            return self.answer(400, {"message": f"at most {DELETE_LIMIT} users per request"})
        state.max_batch = max(state.max_batch, len(users))
        for user in users:
            state.attributes.pop(user, None)
        state.deleted.extend(users)
        state.served += 1
        return self.answer(202, {"deleted": len(users), "message": "success"})


    def upload(self, state, body):
        records = body.get("d") or []
        if len(records) > UPLOAD_LIMIT:
            return self.answer(400, {"status": "fail", "code": 400,
                                     "error": f"at most {UPLOAD_LIMIT} records per call"})
        state.max_batch = max(state.max_batch, len(records))
        unprocessed = []
        for record in records:
            identity = record.get("identity")
            kind = record.get("type")
            if not identity or not isinstance(record.get("ts"), int) or kind not in ("profile", "event"):
                unprocessed.append({"status": "fail", "code": 510,
                                    "error": "identity, ts and type are required", "record": record})
                continue
            user = f"identity:{identity}"
            if kind == "profile":
                data = record.get("profileData") or {}
                email = data.get("Email")
                if email is not None and "@" not in str(email):
                    unprocessed.append({"status": "fail", "code": 515,
                                        "error": f"Invalid email {email!r}", "record": record})
                    continue
                state.attributes.setdefault(user, {}).update(data)
            else:
                data = record.get("evtData") or {}
                key = str(data.get("sluice_dedup_key"))
                kept = state.purchases if record.get("evtName") == "Charged" else state.events
                entry = kept.setdefault(key, {"user": user, "count": 0, "object": record})
                entry["count"] += 1
        state.served += 1
        return self.answer(200, {"status": "success", "processed": len(records) - len(unprocessed),
                                 "unprocessed": unprocessed})

    def delete_profiles(self, state, body):
        identities = body.get("identity") or []
        if len(identities) > CLEVERTAP_DELETE_LIMIT:
            return self.answer(400, {"status": "fail", "code": 400,
                                     "error": f"at most {CLEVERTAP_DELETE_LIMIT} identities"})
        state.max_batch = max(state.max_batch, len(identities))
        for identity in identities:
            state.attributes.pop(f"identity:{identity}", None)
            state.deleted.append(f"identity:{identity}")
        state.served += 1
        return self.answer(200, {"status": "success"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", default="")
    parser.add_argument("--account-id", default="")
    parser.add_argument("--passcode", default="")
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, 0), Handler)
    server.state = State(args)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
