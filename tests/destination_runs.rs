//! Imports delivered to engagement platforms through the whole fleet: 50,000 profiles and
//! 200,000 events to a stand-in of each platform's API (its request formats, batch limits,
//! per-record errors, 429s with Retry-After and 503s), every record delivered once, the runs'
//! stats equal to what the platform counted, a resync sending no event twice, the platform's
//! refusals in `sluice runs errors`, and a dry run sending nothing and showing its request.

mod common;

use common::platforms::{self, assert_waits_honoured, held};
use common::Fleet;
use serde_json::Value;

const PEOPLE: i64 = 50_000;
const EVENTS: i64 = 200_000;
/// Every 5,000th person's email is at the domain the platform refuses: 10 in all.
const REFUSED_EVERY: i64 = 5_000;

/// One platform as the test drives it.
struct Platform {
    kind: &'static str,
    /// The stand-in's credential flags.
    flags: &'static [&'static str],
    /// The destination's credentials, as the spec writes them.
    credentials: &'static str,
    /// The platform's documented batch limit for profiles and for events.
    batches: (u64, u64),
    /// Every how many requests the stand-in answers 429, and 503.
    throttle_every: &'static str,
    fail_every: &'static str,
}

const BRAZE: Platform = Platform {
    kind: "braze",
    flags: &["--api-key", "braze-secret"],
    credentials: "{ api_key: braze-secret }",
    batches: (75, 75),
    throttle_every: "500",
    fail_every: "211",
};

const CLEVERTAP: Platform = Platform {
    kind: "clevertap",
    flags: &["--account-id", "ACC-1", "--passcode", "clevertap-secret"],
    credentials: "{ account_id: ACC-1, passcode: clevertap-secret }",
    batches: (1_000, 1_000),
    throttle_every: "60",
    fail_every: "37",
};

const KLAVIYO: Platform = Platform {
    kind: "klaviyo",
    flags: &["--klaviyo-key", "pk_klaviyo-secret"],
    credentials: "{ api_key: pk_klaviyo-secret }",
    batches: (10_000, 1_000),
    throttle_every: "50",
    fail_every: "41",
};

/// `public.people` (50,000, every 5,000th email at the refused domain) and `public.views`
/// (200,000 events, four per person, each with its own id).
async fn create_tables(fleet: &Fleet) {
    fleet
        .warehouse()
        .await
        .batch_execute(&format!(
            "CREATE TABLE public.people (id bigint PRIMARY KEY, ext text NOT NULL, email text,
                                         tier text, updated_at timestamptz NOT NULL);
             INSERT INTO public.people
             SELECT g, 'user-' || g,
                    CASE WHEN g % {REFUSED_EVERY} = 0 THEN 'p' || g || '@refused.example'
                         ELSE 'p' || g || '@example.com' END,
                    CASE WHEN g % 2 = 0 THEN 'gold' ELSE 'silver' END,
                    timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, {PEOPLE}) g;
             CREATE TABLE public.views (id bigint PRIMARY KEY, ext text NOT NULL,
                                        page text, viewed_at timestamptz NOT NULL,
                                        updated_at timestamptz NOT NULL);
             INSERT INTO public.views
             SELECT g, 'user-' || (g % {PEOPLE} + 1), '/page/' || (g % 13),
                    timestamptz '2025-02-01 00:00:00+00' + g * interval '1 second',
                    timestamptz '2025-03-01 00:00:00+00' + g * interval '1 millisecond'
               FROM generate_series(1, {EVENTS}) g;"
        ))
        .await
        .unwrap();
}

/// The spec: the destination and the two imports delivering to it.
fn spec(fleet: &Fleet, platform: &Platform, url: &str) -> String {
    let imports = "  - name: people
    connection: wh
    destination: platform
    source: { table: public.people }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext, email: email }
    properties:
      tier: { column: tier, type: string }
    chunk_rows: 10000
    settle_lag: 1s
  - name: views
    connection: wh
    destination: platform
    source: { table: public.views }
    data_type: events
    key: id
    watermark: updated_at
    identity: { external_id: ext }
    event_name: { value: Viewed Page }
    event_time: { column: viewed_at }
    dedup_key: id
    properties:
      page: { column: page, type: string }
    chunk_rows: 20000
    settle_lag: 1s
";
    format!(
        "{}destinations:\n  - name: platform\n    kind: {}\n    url: {url}\n    credentials: {}\n    requests_per_second: 400\n",
        fleet.spec(imports),
        platform.kind,
        platform.credentials
    )
}

fn number(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

async fn delivers_every_record_once(platform: Platform) {
    let stand_in = {
        let mut args = platform.flags.to_vec();
        args.extend([
            "--throttle-every",
            platform.throttle_every,
            "--fail-every",
            platform.fail_every,
            "--retry-after",
            "1",
            "--refuse-domain",
            "refused.example",
        ]);
        platforms::start(&args)
    };
    let url = format!("http://127.0.0.1:{}", stand_in.port);
    let mut fleet = Fleet::new().await;
    create_tables(&fleet).await;
    fleet.apply_ok(&spec(&fleet, &platform, &url));
    let listed = fleet.sluice_json(&[
        "destinations",
        "list",
        "--workspace",
        "acme",
        "--output",
        "json",
    ]);
    assert_eq!(listed[0]["name"], "platform", "{listed}");
    assert_eq!(listed[0]["kind"], platform.kind);
    assert_eq!(listed[0]["imports"], serde_json::json!(["people", "views"]));
    assert!(
        !listed.to_string().contains("secret"),
        "no credentials listed: {listed}"
    );
    fleet.start("all", &[]);

    // A dry run builds the requests and sends nothing.
    let dry = fleet.run_with("acme", "people", &["--dry-run"]);
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(number(&dry["records_delivered"]), PEOPLE);
    assert_eq!(
        held(stand_in.port).await["requests"],
        0,
        "a dry run sends nothing"
    );
    let sample = &dry["delivery_sample"];
    assert!(
        sample["url"].as_str().unwrap().starts_with(&url),
        "{sample}"
    );
    assert!(
        !sample.to_string().contains("secret"),
        "credentials masked: {sample}"
    );
    assert!(sample["headers"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == "********"));
    let text = fleet.sluice(&[
        "run",
        "people",
        "--workspace",
        "acme",
        "--dry-run",
        "--wait",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("records would be sent") && text.contains("the first request"),
        "{text}"
    );
    assert_eq!(
        held(stand_in.port).await["requests"],
        0,
        "a dry run sends nothing"
    );

    // Profiles: each delivered once, the refused ones in the error stream.
    let run = fleet.run("acme", "people");
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    let refused = PEOPLE / REFUSED_EVERY;
    let after_profiles = held(stand_in.port).await;
    let users = after_profiles["attributes"].as_object().unwrap();
    assert_eq!(users.len() as i64, PEOPLE - refused);
    assert_eq!(number(&run["records_delivered"]), users.len() as i64);
    assert_eq!(number(&run["rows_rejected"]), refused);
    assert_eq!(
        number(&run["rejected_by_reason"]["destination_refused"]),
        refused
    );
    assert!(after_profiles["max_batch"].as_u64().unwrap() <= platform.batches.0);
    let errors = fleet.sluice_json(&[
        "runs",
        "errors",
        run["run_id"].as_str().unwrap(),
        "--output",
        "json",
    ]);
    let listed = errors.as_array().unwrap();
    assert_eq!(listed.len() as i64, refused, "{errors}");
    for error in listed {
        assert_eq!(error["reason"], "destination_refused");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("refused.example") && message.contains("nvalid email"),
            "the platform's message: {message}"
        );
        let key: i64 = error["row_key"].as_str().unwrap().parse().unwrap();
        assert_eq!(key % REFUSED_EVERY, 0);
    }

    // Events: each delivered once, in batches within the limit.
    let run = fleet.run("acme", "views");
    assert_eq!(run["status"], "succeeded", "{run}");
    let after_events = held(stand_in.port).await;
    let events = after_events["events"].as_object().unwrap();
    assert_eq!(events.len() as i64, EVENTS);
    assert!(events.values().all(|e| e["count"] == 1), "every event once");
    assert_eq!(number(&run["records_delivered"]), EVENTS);
    assert!(
        after_events["max_batch"].as_u64().unwrap() <= platform.batches.0.max(platform.batches.1)
    );
    assert_waits_honoured(&after_events);

    // A resync reads every row again and sends no event twice.
    let out = fleet.sluice(&["imports", "resync", "views", "--workspace", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = after_events["requests"].as_u64().unwrap();
    let resync = fleet.run("acme", "views");
    assert_eq!(resync["status"], "succeeded", "{resync}");
    assert_eq!(number(&resync["rows_read"]), EVENTS);
    assert_eq!(number(&resync["records_delivered"]), 0);
    assert_eq!(number(&resync["events_duplicate"]), EVENTS);
    let after_resync = held(stand_in.port).await;
    assert_eq!(
        after_resync["requests"].as_u64().unwrap(),
        requests,
        "nothing sent again"
    );
    let events = after_resync["events"].as_object().unwrap();
    assert!(events.values().all(|e| e["count"] == 1), "every event once");

    // Nothing reached the built-in stores.
    let stored: i64 = fleet
        .control()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM profile_store.profiles)
                  + (SELECT count(*) FROM profile_store.events)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "nothing in the built-in stores");
    fleet.cleanup().await;
}

#[tokio::test]
async fn braze_gets_every_profile_and_event_once_with_its_refusals_in_the_error_stream() {
    delivers_every_record_once(BRAZE).await;
}

#[tokio::test]
async fn clevertap_gets_every_profile_and_event_once_with_its_refusals_in_the_error_stream() {
    delivers_every_record_once(CLEVERTAP).await;
}

#[tokio::test]
async fn klaviyo_gets_every_profile_and_event_once_with_its_refusals_in_the_error_stream() {
    delivers_every_record_once(KLAVIYO).await;
}

/// Applies `spec` and returns what it said on stderr; the apply must fail.
fn refused(fleet: &Fleet, spec: &str) -> String {
    let out = fleet.apply(spec);
    assert!(!out.status.success(), "applied: {spec}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test]
async fn specs_a_platform_cannot_take_are_refused_a_wrong_key_fails_the_run_and_deletes_and_purchases_arrive(
) {
    let stand_in = platforms::start(&["--klaviyo-key", "pk_right"]);
    let url = format!("http://127.0.0.1:{}", stand_in.port);
    let mut fleet = Fleet::new().await;
    fleet
        .warehouse()
        .await
        .batch_execute(
            "CREATE TABLE public.orders (id bigint PRIMARY KEY, ext text NOT NULL, sku text,
                                         cur text, price numeric, at timestamptz NOT NULL);
             INSERT INTO public.orders
             SELECT g, 'user-' || g, 'sku-' || (g % 7), 'EUR', g * 1.5,
                    timestamptz '2025-04-01 00:00:00+00' + g * interval '1 minute'
               FROM generate_series(1, 300) g;
             CREATE TABLE public.forget (id bigint PRIMARY KEY, ext text NOT NULL,
                                         at timestamptz NOT NULL);
             INSERT INTO public.forget
             SELECT g, 'user-' || g, timestamptz '2025-05-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, 120) g;",
        )
        .await
        .unwrap();
    let destination = |key: &str| {
        format!(
            "destinations:\n  - name: kl\n    kind: klaviyo\n    url: {url}\n    credentials: {{ api_key: {key} }}\n    requests_per_second: 100\n"
        )
    };
    let orders = |extra: &str| {
        format!(
            "  - name: orders
    connection: wh
    destination: kl
    source: {{ table: public.orders }}
    data_type: purchases
    key: id
    watermark: at
    identity: {{ external_id: ext }}
    event_time: {{ column: at }}
    dedup_key: id
    purchase: {{ product_id: sku, currency: cur, price: price }}
    settle_lag: 1s
{extra}"
        )
    };
    let forget = "  - name: forget
    connection: wh
    destination: kl
    source: { table: public.forget }
    data_type: user_deletes
    key: id
    watermark: at
    identity: { external_id: ext }
    allow_deletes: true
    settle_lag: 1s
";

    // What the platform cannot take is refused at its field, and nothing is written.
    let missing = refused(
        &fleet,
        &fleet
            .spec(&format!("{}{}", orders(""), destination("pk_right")))
            .replace("destination: kl", "destination: nowhere"),
    );
    assert!(
        missing.contains("imports[0].destination") && missing.contains("nowhere"),
        "{missing}"
    );
    let no_key = refused(
        &fleet,
        &fleet.spec(&format!(
            "{}destinations:\n  - name: kl\n    kind: klaviyo\n    url: {url}\n    credentials: {{ token: x }}\n",
            orders("")
        )),
    );
    assert!(no_key.contains("destinations[0].credentials"), "{no_key}");
    let update_only = refused(
        &fleet,
        &fleet.spec(&format!(
            "{}{}",
            orders("    mode: update_only\n"),
            destination("pk_right")
        )),
    );
    assert!(update_only.contains("imports[0].mode"), "{update_only}");
    let listed = fleet.sluice(&["destinations", "list", "--workspace", "acme"]);
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("no workspace"),
        "a refused spec writes nothing"
    );

    // A key the platform refuses fails the run with its message.
    fleet.apply_ok(&fleet.spec(&format!(
        "{}{forget}{}",
        orders(""),
        destination("pk_wrong")
    )));
    fleet.start("all", &[]);
    let failed = fleet.run("acme", "orders");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_code"], "destination_refused", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("Incorrect authentication credentials"),
        "{failed}"
    );

    // With the right key (stored by a spec naming the destination it already has), purchases
    // and deletes arrive.
    fleet.apply_ok(&fleet.spec(&format!(
        "{}{forget}{}",
        orders(""),
        destination("pk_right")
    )));
    let run = fleet.run("acme", "orders");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["records_delivered"], 300);
    let purchases = held(stand_in.port).await["purchases"].clone();
    let purchases = purchases.as_object().unwrap();
    assert_eq!(purchases.len(), 300);
    let first = &purchases["1"]["object"]["attributes"];
    assert_eq!(first["value"], 1.5, "{first}");
    assert_eq!(
        first["metric"]["data"]["attributes"]["name"],
        "Placed Order"
    );
    let run = fleet.run("acme", "forget");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["records_delivered"], 120);
    let deleted = held(stand_in.port).await["deleted"].clone();
    assert_eq!(deleted.as_array().unwrap().len(), 120, "{deleted}");
    fleet.cleanup().await;
}
