"""Engagement-platform stand-in for the destination tests: Braze's REST API as Braze documents
it (POST /users/track with attributes, events and purchases, at most 75 objects per request;
POST /users/delete with at most 50 users; bearer API keys; minor errors naming the object by
array and index) and CleverTap's (POST /1/upload with at most 1,000 profile or event records,
each with identity, ts and profileData or evtName and evtData; POST /1/delete/profiles.json;
the account id and passcode headers; unprocessed records echoed with their code and error)
and Klaviyo's (JSON:API with a revision header and Klaviyo-API-Key; bulk profile import jobs
of at most 10,000 profiles, polled until complete, their import-errors paged with the original
payload; bulk event create jobs of at most 1,000 events with unique_id; deletion jobs);
for all, 429 with Retry-After and 5xx. It keeps what it was sent, so a test can count every
record delivered and compare.

Usage: platforms_stand_in.py --api-key KEY [--account-id ID --passcode P] [--klaviyo-key K]
       [--throttle-every N] [--fail-every N] [--retry-after SECONDS] [--refuse-domain D]
       [--host ADDRESS]
Every Nth request is answered 429 (or 503) instead of being served. Emails without an @, or
at the domain D (a platform's own deliverability check), are refused per record. Prints the
port first.
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
KLAVIYO_PROFILE_LIMIT = 10000
KLAVIYO_EVENT_LIMIT = 1000
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
        self.jobs = {}


REFUSED_DOMAIN = None


def bad_email(email):
    """Whether the platform refuses an email address: no @, or at the refused domain."""
    if email is None:
        return False
    email = str(email)
    return "@" not in email or (REFUSED_DOMAIN is not None
                                and email.lower().endswith("@" + REFUSED_DOMAIN))


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
    # Headers and body are written apart: without this, Nagle's algorithm and the client's
    # delayed acknowledgement hold each answer back by tens of milliseconds.
    disable_nagle_algorithm = True

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
        if self.path.startswith("/api/profile-bulk-import-jobs/"):
            return self.klaviyo_job(state)
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
        if self.path.startswith("/api/"):
            if self.headers.get("Authorization") != f"Klaviyo-API-Key {state.args.klaviyo_key}":
                return self.answer(401, klaviyo_error(401, "not_authenticated",
                                                      "Incorrect authentication credentials."))
            if not self.headers.get("revision"):
                return self.answer(400, klaviyo_error(400, "invalid", "Missing revision header."))
        elif self.path.startswith("/1/"):
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
            if self.path == "/api/profile-bulk-import-jobs":
                return self.klaviyo_profiles(state, body)
            if self.path == "/api/event-bulk-create-jobs":
                return self.klaviyo_events(state, body)
            if self.path == "/api/data-privacy-deletion-jobs":
                ids = body["data"]["attributes"]["profile"]["data"]["attributes"]
                state.deleted.append(ids)
                state.served += 1
                return self.answer(202, {"data": {"type": "data-privacy-deletion-job",
                                                  "id": f"d{state.requests}"}})
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
                    if bad_email(email):
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
                if bad_email(email):
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


    def klaviyo_profiles(self, state, body):
        profiles = body["data"]["attributes"]["profiles"]["data"]
        if len(profiles) > KLAVIYO_PROFILE_LIMIT:
            return self.answer(400, klaviyo_error(400, "invalid",
                                                  f"at most {KLAVIYO_PROFILE_LIMIT} profiles a job"))
        state.max_batch = max(state.max_batch, len(profiles))
        job = f"j{state.requests}"
        errors = []
        for resource in profiles:
            attributes = resource["attributes"]
            email = attributes.get("email")
            if bad_email(email):
                errors.append({"type": "import-error", "id": f"e{len(errors)}", "attributes": {
                    "code": "invalid", "title": "Invalid input.",
                    "detail": f"Invalid email address {email!r}", "original_payload": attributes}})
                continue
            user = next((f"{k}:{attributes[k]}" for k in ("external_id", "email", "phone_number")
                         if k in attributes), None)
            fields = state.attributes.setdefault(user, {})
            for key, value in (attributes.get("properties") or {}).items():
                if value is None:
                    fields.pop(key, None)
                else:
                    fields[key] = value
        state.jobs[job] = {"polls": 0, "errors": errors, "total": len(profiles)}
        state.served += 1
        return self.answer(202, {"data": {"type": "profile-bulk-import-job", "id": job,
                                          "attributes": {"status": "queued"}}})

    def klaviyo_job(self, state):
        parts = self.path.split("?")[0].split("/")
        job = state.jobs.get(parts[3])
        if job is None:
            return self.answer(404, klaviyo_error(404, "not_found", "No such job."))
        if len(parts) > 4 and parts[4] == "import-errors":
            query = self.path.partition("?")[2]
            start = int(query.partition("=")[2] or 0) if query else 0
            page = job["errors"][start:start + 100]
            links = {}
            if start + 100 < len(job["errors"]):
                links["next"] = (f"http://{self.headers.get('Host')}/api/profile-bulk-import-jobs/"
                                 f"{parts[3]}/import-errors?page={start + 100}")
            return self.answer(200, {"data": page, "links": links})
        with state.lock:
            job["polls"] += 1
            status = "complete" if job["polls"] > 1 else "processing"
        failed = len(job["errors"])
        return self.answer(200, {"data": {"type": "profile-bulk-import-job", "id": parts[3],
                                          "attributes": {"status": status,
                                                         "total_count": job["total"],
                                                         "failed_count": failed}}})

    def klaviyo_events(self, state, body):
        entries = body["data"]["attributes"]["events-bulk-create"]["data"]
        if len(entries) > KLAVIYO_EVENT_LIMIT:
            return self.answer(400, klaviyo_error(400, "invalid",
                                                  f"at most {KLAVIYO_EVENT_LIMIT} events a job"))
        state.max_batch = max(state.max_batch, len(entries))
        for entry in entries:
            ids = entry["attributes"]["profile"]["data"]["attributes"]
            user = next((f"{k}:{ids[k]}" for k in ("external_id", "email", "phone_number")
                         if k in ids), None)
            for event in entry["attributes"]["events"]["data"]:
                attributes = event["attributes"]
                name = attributes["metric"]["data"]["attributes"]["name"]
                kept = state.purchases if name == "Placed Order" else state.events
                key = str(attributes.get("unique_id"))
                record = kept.setdefault(key, {"user": user, "count": 0, "object": event})
                record["count"] += 1
        state.served += 1
        return self.answer(202, {"data": {"type": "event-bulk-create-job",
                                          "id": f"ev{state.requests}",
                                          "attributes": {"status": "queued"}}})


def klaviyo_error(status, code, detail):
    return {"errors": [{"id": "0", "status": status, "code": code, "title": detail,
                        "detail": detail, "source": {"pointer": "/data/"}}]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", default="")
    parser.add_argument("--account-id", default="")
    parser.add_argument("--passcode", default="")
    parser.add_argument("--klaviyo-key", default="")
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--refuse-domain", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    global REFUSED_DOMAIN
    REFUSED_DOMAIN = args.refuse_domain
    server = ThreadingHTTPServer((args.host, 0), Handler)
    server.state = State(args)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
