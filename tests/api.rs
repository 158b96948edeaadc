//! The operator HTTP API against a real fleet: bearer tokens with roles, runs triggered
//! idempotently and read back, the OpenAPI document matching the routes served, and no
//! endpoint reaching another workspace's objects.

mod common;

use common::Fleet;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The acme connection's password: it must never come back out.
const PASSWORD: &str = "Pw-0f-acme-nEver-sh0wn";

/// A fleet with the API served on a known port, workspaces `acme` and `beta`, and a token of
/// each role for `acme`.
struct Api {
    fleet: Fleet,
    base: String,
    http: reqwest::Client,
    admin: String,
    operator: String,
    viewer: String,
    beta_admin: String,
}

impl Api {
    async fn start() -> Api {
        let mut fleet = Fleet::new().await;
        common::create_users(&fleet.warehouse().await, 1_000).await;
        // Trust authentication ignores the password, so it is there only to be kept secret.
        fleet.apply_ok(&common::users_spec(&fleet, 400).replace(
            "postgres://postgres@",
            &format!("postgres://postgres:{PASSWORD}@"),
        ));
        let beta = common::users_spec(&fleet, 400)
            .replace("workspace: acme", "workspace: beta")
            .replace("name: wh", "name: beta_wh")
            .replace("connection: wh", "connection: beta_wh")
            .replace("name: users", "name: beta_only");
        fleet.apply_ok(&beta);
        let (admin, operator, viewer) = (
            fleet.token("acme", "admin"),
            fleet.token("acme", "operator"),
            fleet.token("acme", "viewer"),
        );
        let beta_admin = fleet.token("beta", "admin");
        let port = common::free_port();
        fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        common::wait_for_api(&base).await;
        Api {
            fleet,
            base,
            http,
            admin,
            operator,
            viewer,
            beta_admin,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), body).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Waits for a run to end and returns its summary.
    async fn finished(&self, run_id: &str, token: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, run) = self.get(&format!("/v1/runs/{run_id}"), token).await;
            if status == StatusCode::OK
                && ["succeeded", "partially_succeeded", "failed", "cancelled"]
                    .contains(&run["status"].as_str().unwrap_or(""))
            {
                return run;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "run {run_id}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Every documented route with a concrete path and the method it is served on.
fn documented_routes(openapi: &Value) -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{name}", "users")
                .replace("{run_id}", "00000000-0000-0000-0000-000000000000")
                .replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{profile_id}", "0");
            routes.push((method.to_uppercase().parse().unwrap(), concrete));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_is_documented_and_refuses_callers_without_a_valid_token() {
    let api = Api::start().await;
    let (status, openapi) = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        openapi["openapi"].as_str().map(|v| &v[..2]),
        Some("3."),
        "{openapi}"
    );
    let document = api.fleet.data_dir.join("openapi.json");
    std::fs::write(&document, openapi.to_string()).unwrap();
    let validated = std::process::Command::new(common::stand_in::python())
        .args(["-m", "openapi_spec_validator"])
        .arg(&document)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "the OpenAPI document is invalid: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    let routes = documented_routes(&openapi);
    assert!(routes.len() >= 12, "{routes:?}");
    for (method, path) in &routes {
        for token in [
            None,
            Some("slc_00000000000000000000000000000000_nope"),
            Some("junk"),
        ] {
            let (status, body) = api.call(method.clone(), path, token, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["code"], "unauthenticated", "{method} {path}: {body}");
        }
    }
    // What is not documented is not served.
    let (status, body) = api.get("/v1/imports/users/nonsense", &api.admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = api
        .call(Method::DELETE, "/v1/imports", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    api.fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_may_run_and_an_idempotency_key_starts_one_run() {
    let api = Api::start().await;
    let (status, me) = api.get("/v1/workspace", &api.viewer).await;
    assert_eq!(
        (status, me),
        (StatusCode::OK, json!({"name": "acme", "role": "viewer"}))
    );

    let (status, imports) = api.get("/v1/imports", &api.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(imports[0]["name"], "users", "{imports}");
    let (status, import) = api.get("/v1/imports/users", &api.viewer).await;
    assert_eq!(
        (status, import["state"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{import}"
    );
    let (status, connections) = api.get("/v1/connections", &api.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        connections,
        json!([{"name": "wh", "kind": "postgres", "imports": 1}])
    );
    assert!(
        !connections.to_string().contains("postgres://"),
        "no URL is shown"
    );

    let trigger = |token: &str, key: &str| {
        let request = api
            .http
            .post(format!("{}/v1/imports/users/runs", api.base))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({}));
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = trigger(&api.viewer, "k1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, first) = trigger(&api.operator, "k1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (_, again) = trigger(&api.operator, "k1").await;
    assert_eq!(
        first["run_id"], again["run_id"],
        "the same key names the same run"
    );
    let run_id = first["run_id"].as_str().unwrap();
    let run = api.finished(run_id, &api.viewer).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_read"], 1_000, "{run}");

    let (status, page) = api
        .get("/v1/runs?import=users&status=succeeded", &api.viewer)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1, "one run for both requests: {page}");
    assert_eq!(page["runs"][0]["run_id"], run_id);
    let (status, page) = api.get("/v1/runs?status=failed", &api.viewer).await;
    assert_eq!((status, page["total"].as_i64()), (StatusCode::OK, Some(0)));
    let (status, body) = api.get("/v1/runs?per_page=500", &api.viewer).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("per_page"))
    );

    let (status, paused) = api
        .post("/v1/imports/users/pause", &api.operator, None)
        .await;
    assert_eq!(
        (status, paused["state"].as_str()),
        (StatusCode::OK, Some("paused")),
        "{paused}"
    );
    let (status, body) = api
        .post("/v1/imports/users/pause", &api.operator, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, resumed) = api
        .post("/v1/imports/users/resume", &api.operator, None)
        .await;
    assert_eq!(
        (status, resumed["state"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{resumed}"
    );

    // Admins manage tokens; a revoked token stops working at once.
    let (status, _) = api
        .post(
            "/v1/tokens",
            &api.operator,
            Some(json!({"name": "x", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, made) = api
        .post(
            "/v1/tokens",
            &api.admin,
            Some(json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let new_token = made["token"].as_str().unwrap();
    assert_eq!(api.get("/v1/workspace", new_token).await.0, StatusCode::OK);
    let (_, listed) = api.get("/v1/tokens", &api.admin).await;
    assert!(
        !listed
            .to_string()
            .contains(new_token.rsplit('_').next().unwrap()),
        "no secret is listed"
    );
    let id = made["id"].as_str().unwrap();
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/v1/workspace", new_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    api.fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_one_workspace_gets_404_for_every_object_of_another() {
    let api = Api::start().await;
    // beta's objects: an import, a connection, a run and a token.
    let (status, run) = api
        .post("/v1/imports/beta_only/runs", &api.beta_admin, None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let beta_run = run["run_id"].as_str().unwrap().to_string();
    let (_, beta_tokens) = api.get("/v1/tokens", &api.beta_admin).await;
    let beta_token_id = beta_tokens[0]["id"].as_str().unwrap().to_string();

    api.finished(&beta_run, &api.beta_admin).await;
    let (status, beta_profile) = api
        .get(
            "/v1/profiles?kind=external_id&value=user-1",
            &api.beta_admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{beta_profile}");
    let beta_profile_id = beta_profile["profile_id"].as_i64().unwrap();

    let (_, openapi) = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    let mut checked = 0;
    for (method, template) in documented_routes(&openapi) {
        if !template.contains("users")
            && !template.contains("00000000-0000")
            && !template.contains("/profiles/0/")
        {
            continue;
        }
        // PUT creates or replaces the named object in the caller's own workspace.
        if method == Method::PUT {
            continue;
        }
        let path = template
            .replace("/imports/users", "/imports/beta_only")
            .replace("/connections/users", "/connections/beta_wh")
            .replace(
                "/runs/00000000-0000-0000-0000-000000000000",
                &format!("/runs/{beta_run}"),
            )
            .replace(
                "/tokens/00000000-0000-0000-0000-000000000000",
                &format!("/tokens/{beta_token_id}"),
            )
            .replace("/profiles/0/", &format!("/profiles/{beta_profile_id}/"));
        let (status, body) = api
            .call(method.clone(), &path, Some(&api.admin), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body["code"], "not_found", "{method} {path}: {body}");
        checked += 1;
    }
    assert!(
        checked >= 7,
        "every endpoint naming an object was walked ({checked})"
    );
    // Listings show only the caller's workspace.
    let (_, runs) = api.get("/v1/runs", &api.admin).await;
    assert!(!runs.to_string().contains(&beta_run), "{runs}");
    let (_, imports) = api.get("/v1/imports", &api.admin).await;
    assert!(!imports.to_string().contains("beta_only"), "{imports}");
    // beta's token still works on its own objects.
    assert_eq!(
        api.get("/v1/imports/beta_only", &api.beta_admin).await.0,
        StatusCode::OK
    );
    api.fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn specs_apply_and_imports_are_previewed_steered_and_their_errors_read_through_the_api() {
    let api = Api::start().await;
    let apply = |token: &str, spec: String| {
        let request = api
            .http
            .post(format!("{}/v1/apply?ready=true", api.base))
            .bearer_auth(token)
            .body(spec);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // An import whose birthday mapping rejects every row with a first name.
    let spec = common::users_spec(&api.fleet, 400)
        .replace("name: users", "name: strict")
        .replace(
            "column: birthday, type: date",
            "column: first_name, type: date",
        );
    let (status, body) = apply(&api.operator, spec.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = apply(
        &api.admin,
        spec.replace("workspace: acme", "workspace: beta"),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("workspace")),
        "{body}"
    );
    let (status, body) = apply(
        &api.admin,
        spec.replace("chunk_rows: 400", "chunk_rows: ${SLUICE_MASTER_KEY}"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the server's environment is never read: {body}"
    );
    let (status, body) = apply(&api.admin, spec.replace("type: string", "type: text")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["field"].as_str().unwrap().contains("first_name"),
        "{body}"
    );
    let (status, body) = apply(&api.admin, spec).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // One connection and one import at a time, and bodies refused with the field named.
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/connections/wh2",
            Some(&api.admin),
            Some(json!({"kind": "postgres", "url": api.fleet.warehouse_url()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let import = json!({
        "connection": "wh2", "source": {"table": "public.users"}, "data_type": "profiles",
        "key": "id", "watermark": "updated_at", "identity": {"external_id": "external_id"},
        "properties": {"first_name": {"column": "first_name", "type": "string"}},
        "chunk_rows": 400, "settle_lag": "1s"
    });
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/imports/second?ready=true",
            Some(&api.admin),
            Some(import.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, second) = api.get("/v1/imports/second", &api.viewer).await;
    assert_eq!(second["state"], "ready", "{second}");
    let mut renamed = import.clone();
    renamed["name"] = json!("other");
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/imports/second",
            Some(&api.admin),
            Some(renamed),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name")),
        "{body}"
    );
    let (status, body) = api
        .call(
            Method::PUT,
            "/v1/connections/wh3",
            Some(&api.operator),
            Some(json!({"kind": "postgres", "url": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api
        .post(
            "/v1/imports/strict/rewind",
            &api.admin,
            Some(json!({"too": "2024-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too")),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/v1/tokens",
            &api.admin,
            Some(json!({"name": "x", "role": "boss"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid")),
        "{body}"
    );

    let (status, preview) = api
        .get("/v1/imports/strict/preview?rows=3", &api.viewer)
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["rows"].as_array().unwrap().len(), 3, "{preview}");
    assert!(
        preview["columns"].to_string().contains("first_name"),
        "{preview}"
    );
    let (status, body) = api
        .get("/v1/imports/strict/preview?rows=1000", &api.viewer)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("rows"))
    );

    let (status, tested) = api
        .post("/v1/connections/wh/test", &api.operator, None)
        .await;
    assert_eq!(
        (status, tested["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{tested}"
    );
    assert_eq!(tested["key_promoted"], false, "{tested}");
    let (status, body) = api
        .post("/v1/connections/wh/keygen", &api.admin, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("snowflake"),
        "{body}"
    );
    let (status, _) = api
        .post("/v1/connections/wh/keygen", &api.operator, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let table = json!({"table": "public.users", "key": "id", "watermark": "updated_at",
                       "columns": ["first_name"], "rows": 3});
    let (status, previewed) = api
        .post(
            "/v1/connections/wh/preview",
            &api.operator,
            Some(table.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{previewed}");
    assert_eq!(
        previewed["rows"].as_array().unwrap().len(),
        3,
        "{previewed}"
    );
    assert_eq!(previewed["rows"][0]["first_name"], "Name 1", "{previewed}");
    assert!(
        previewed["columns"].to_string().contains("first_name"),
        "{previewed}"
    );
    let (status, body) = api
        .post(
            "/v1/connections/wh/preview",
            &api.operator,
            Some(
                json!({"query": "SELECT id, updated_at, first_name FROM public.users WHERE id <= 5",
                        "key": "id", "watermark": "updated_at"}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["rows"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(5)),
        "{body}"
    );
    let (status, _) = api
        .post("/v1/connections/wh/preview", &api.viewer, Some(table))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api
        .post(
            "/v1/connections/wh/preview",
            &api.operator,
            Some(json!({"key": "id", "watermark": "updated_at"})),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("table")),
        "{body}"
    );
    let (status, body) = api
        .post(
            "/v1/connections/wh/preview",
            &api.operator,
            Some(json!({"table": "public.users", "key": "id", "watermark": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a missing column: {body}");
    assert!(body["message"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = api
        .call(Method::DELETE, "/v1/connections/wh", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "an import uses it: {body}");

    let (status, run) = api
        .post("/v1/imports/strict/runs", &api.operator, None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let run = api.finished(run_id, &api.viewer).await;
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    let rejected = run["rows_rejected"].as_i64().unwrap();
    assert!(rejected > 900, "{run}");
    let (status, errors) = api
        .get(&format!("/v1/runs/{run_id}/errors?per_page=5"), &api.viewer)
        .await;
    assert_eq!(status, StatusCode::OK, "{errors}");
    assert_eq!(errors.as_array().unwrap().len(), 5, "{errors}");
    assert_eq!(errors[0]["column"], "first_name", "{errors}");
    let csv = api
        .http
        .get(format!("{}/v1/runs/{run_id}/errors.csv", api.base))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().count() as i64,
        rejected + 1,
        "a header and every rejected row"
    );
    assert!(
        csv.lines().next().unwrap().ends_with(",reason"),
        "{csv:.200}"
    );

    let (status, profile) = api
        .get("/v1/profiles?kind=external_id&value=user-97", &api.viewer)
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["identities"][0]["value"], "user-97", "{profile}");
    let id = profile["profile_id"].as_i64().unwrap();
    let (status, by_id) = api
        .get(
            &format!("/v1/profiles?kind=profile_id&value={id}"),
            &api.viewer,
        )
        .await;
    assert_eq!(
        (status, &by_id["profile_id"]),
        (StatusCode::OK, &profile["profile_id"])
    );
    // Email and phone are found on the profile, normalized as imports normalize them, and
    // listed with its identities.
    api.fleet
        .control()
        .await
        .execute(
            "UPDATE profile_store.profiles SET email = 'user97@example.com', phone = '+4722222222'
              WHERE profile_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    for (kind, value) in [
        ("email", "%20User97@Example.COM"),
        ("phone", "%2B47%20222%2022%20222"),
    ] {
        let (status, found) = api
            .get(
                &format!("/v1/profiles?kind={kind}&value={value}"),
                &api.viewer,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{kind}: {found}");
        assert_eq!(found["profile_id"], profile["profile_id"], "{found}");
        let kinds: Vec<&str> = found["identities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["email", "external_id", "phone"], "{found}");
    }
    let (status, _) = api
        .get(
            "/v1/profiles?kind=email&value=nobody@example.com",
            &api.viewer,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, events) = api
        .get(&format!("/v1/profiles/{id}/events"), &api.viewer)
        .await;
    assert_eq!((status, events), (StatusCode::OK, json!([])));
    let (status, _) = api
        .get("/v1/profiles?kind=external_id&value=nobody", &api.viewer)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = api
        .post("/v1/imports/strict/rewind", &api.admin, None)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("to")),
        "{body}"
    );
    let (status, body) = api
        .post("/v1/imports/strict/resync", &api.operator, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, moved) = api
        .post("/v1/imports/strict/resync", &api.admin, None)
        .await;
    assert_eq!(
        (status, moved["to"].clone()),
        (StatusCode::OK, Value::Null),
        "{moved}"
    );
    let (status, replay) = api
        .post(
            "/v1/imports/strict/replay",
            &api.operator,
            Some(json!({"from": "2024-01-01T00:00:00Z", "until": "2024-01-01T00:00:01Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    api.finished(replay["run_id"].as_str().unwrap(), &api.viewer)
        .await;
    let (status, stopped) = api
        .post("/v1/imports/strict/stop", &api.operator, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    let (status, body) = api
        .post("/v1/imports/strict/runs", &api.operator, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{body}"
    );
    api.fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_password_appears_in_no_response_and_no_log_line() {
    let api = Api::start().await;
    let (_, run) = api
        .post("/v1/imports/users/runs", &api.operator, None)
        .await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    api.finished(&run_id, &api.viewer).await;
    let (_, profile) = api
        .get("/v1/profiles?kind=external_id&value=user-1", &api.viewer)
        .await;
    let profile_id = profile["profile_id"].to_string();
    let (_, openapi) = api.call(Method::GET, "/v1/openapi.json", None, None).await;
    let mut seen = String::new();
    for (method, path) in documented_routes(&openapi) {
        if method != Method::GET {
            continue;
        }
        let path = path
            .replace("00000000-0000-0000-0000-000000000000", &run_id)
            .replace("/profiles/0/", &format!("/profiles/{profile_id}/"))
            .replace("/connections/users", "/connections/wh");
        let (status, body) = api.get(&path, &api.admin).await;
        seen.push_str(&format!("{path} {status} {body}\n"));
    }
    let (_, tested) = api.post("/v1/connections/wh/test", &api.admin, None).await;
    seen.push_str(&tested.to_string());
    // A connection that fails says why without its password.
    let unreachable = common::users_spec(&api.fleet, 400).replace(
        "postgres://postgres@127.0.0.1:5432",
        &format!("postgres://postgres:{PASSWORD}@127.0.0.1:1"),
    );
    let failed = api
        .http
        .post(format!("{}/v1/apply", api.base))
        .bearer_auth(&api.admin)
        .body(unreachable)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    let failed = failed.text().await.unwrap();
    assert!(failed.contains("unreachable"), "{failed}");
    seen.push_str(&failed);
    assert!(
        seen.contains("/v1/runs/"),
        "the walk read the API: {seen:.300}"
    );
    assert!(!seen.contains(PASSWORD), "a response holds the password");
    let mut logs = String::new();
    for entry in std::fs::read_dir(&api.fleet.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(
        logs.contains("HTTP listening"),
        "the logs were read: {logs:.300}"
    );
    assert!(!logs.contains(PASSWORD), "a log line holds the password");
    api.fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_applies_runs_and_lists_through_the_api_without_the_database() {
    let api = Api::start().await;
    let spec = api.fleet.data_dir.join("remote.yaml");
    std::fs::write(
        &spec,
        common::users_spec(&api.fleet, 400)
            .replace("name: users", "name: remote")
            .replace("chunk_rows: 400", "chunk_rows: ${REMOTE_CHUNK_ROWS}"),
    )
    .unwrap();
    // The database URL leads nowhere: everything must go through the API.
    let env = [
        ("SLUICE_SERVER", api.base.as_str()),
        ("SLUICE_TOKEN", api.admin.as_str()),
        ("SLUICE_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
        ("REMOTE_CHUNK_ROWS", "300"),
    ];
    let text = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let applied = text(
        api.fleet
            .sluice_with_env(&["apply", "-f", spec.to_str().unwrap(), "--ready"], &env),
    );
    assert!(applied.contains("import remote: created"), "{applied}");
    let run = text(api.fleet.sluice_with_env(
        &[
            "run",
            "remote",
            "--workspace",
            "acme",
            "--wait",
            "--output",
            "json",
        ],
        &env,
    ));
    let run: Value = serde_json::from_str(run.trim()).unwrap();
    assert_eq!(
        (run["status"].as_str(), run["rows_read"].as_i64()),
        (Some("succeeded"), Some(1_000)),
        "{run}"
    );
    assert_eq!(
        run["chunks"], 4,
        "chunk_rows came from the client's environment: {run}"
    );
    let listed = text(
        api.fleet
            .sluice_with_env(&["imports", "list", "--workspace", "acme"], &env),
    );
    assert!(
        listed.contains("remote") && listed.contains("users"),
        "{listed}"
    );
    let on_host = text(
        api.fleet
            .sluice(&["imports", "list", "--workspace", "acme"]),
    );
    assert_eq!(
        on_host, listed,
        "the host and the API answer through the same service, printed the same way"
    );
    let tested = text(
        api.fleet
            .sluice_with_env(&["connections", "test", "wh", "--workspace", "acme"], &env),
    );
    assert!(tested.contains("wh: ok"), "{tested}");
    let paused = text(
        api.fleet
            .sluice_with_env(&["imports", "pause", "remote", "--workspace", "acme"], &env),
    );
    assert!(paused.contains("import acme/remote paused"), "{paused}");
    let shown = text(api.fleet.sluice_with_env(
        &[
            "imports",
            "show",
            "remote",
            "--workspace",
            "acme",
            "--output",
            "json",
        ],
        &env,
    ));
    assert!(shown.contains("\"state\":\"paused\""), "{shown}");
    text(api.fleet.sluice_with_env(
        &["imports", "resume", "remote", "--workspace", "acme"],
        &env,
    ));
    let rewound = text(api.fleet.sluice_with_env(
        &[
            "imports",
            "rewind",
            "remote",
            "--workspace",
            "acme",
            "--to",
            "2024-01-01T00:00:10Z",
        ],
        &env,
    ));
    assert!(rewound.contains("watermark moved back"), "{rewound}");
    let preview = text(api.fleet.sluice_with_env(
        &[
            "imports",
            "preview",
            "remote",
            "--workspace",
            "acme",
            "--rows",
            "3",
        ],
        &env,
    ));
    assert!(preview.contains("first_name: Utf8"), "{preview}");
    assert_eq!(
        preview.lines().filter(|l| l.contains("user-")).count(),
        3,
        "{preview}"
    );
    let replayed = text(api.fleet.sluice_with_env(
        &[
            "imports",
            "replay",
            "remote",
            "--workspace",
            "acme",
            "--from",
            "2020-01-01T00:00:00Z",
            "--until",
            "2030-01-01T00:00:00Z",
            "--wait",
            "--output",
            "json",
        ],
        &env,
    ));
    let replayed: Value = serde_json::from_str(replayed.trim()).unwrap();
    assert_eq!(
        (replayed["status"].as_str(), replayed["rows_read"].as_i64()),
        (Some("succeeded"), Some(1_000)),
        "{replayed}"
    );
    let remote_run = run["run_id"].as_str().unwrap();
    let errors = text(
        api.fleet
            .sluice_with_env(&["runs", "errors", remote_run, "--csv"], &env),
    );
    assert!(
        errors.lines().next().unwrap().ends_with(",reason"),
        "{errors}"
    );
    let refused = api.fleet.sluice_with_env(
        &["connections", "delete", "wh", "--workspace", "acme"],
        &env,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("conflict"));
    let other = api
        .fleet
        .sluice_with_env(&["imports", "list", "--workspace", "beta"], &env);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("belongs to workspace"));

    let deleted = text(api.fleet.sluice_with_env(
        &["imports", "delete", "remote", "--workspace", "acme"],
        &env,
    ));
    assert!(
        deleted.contains("import acme/remote deleted with 2 runs"),
        "the run and the replay: {deleted}"
    );
    let (status, body) = api.get("/v1/imports/remote", &api.viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .get(&format!("/v1/runs/{remote_run}"), &api.viewer)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "its runs went with it: {body}"
    );

    // With no extractor to read its chunks, a run stays running, and deleting waits for it.
    let mut api = api;
    api.fleet.kill("all");
    api.fleet.start("coordinator", &[]);
    let queued = api.fleet.request_run("acme", "users");
    let control = api.fleet.control().await;
    let started = Instant::now();
    loop {
        let status: Option<String> = control
            .query_opt(
                "SELECT status FROM control.runs WHERE id = $1::text::uuid",
                &[&queued],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        if status.as_deref() == Some("running") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = api
        .fleet
        .sluice(&["imports", "delete", "users", "--workspace", "acme"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains(&queued) && stderr.contains("active"),
        "{stderr}"
    );
    assert_eq!(api.fleet.import_view("users")["name"], "users");
    let stopped = api
        .fleet
        .sluice(&["imports", "stop", "users", "--workspace", "acme"]);
    assert!(stopped.status.success());
    let deleted = api
        .fleet
        .sluice(&["imports", "delete", "users", "--workspace", "acme"]);
    assert!(
        String::from_utf8_lossy(&deleted.stdout).contains("deleted with 1 runs"),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let runs: i64 = control
        .query_one(
            "SELECT count(*) FROM control.runs r JOIN control.imports i ON i.id = r.import_id
              WHERE i.name = 'users'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 0);
    api.fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_keeps_a_session_not_the_token_refuses_cross_site_sign_in_and_sends_its_headers() {
    let api = Api::start().await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = [("token", api.viewer.as_str())];

    let page = browser
        .get(format!("{}/ui/login", api.base))
        .send()
        .await
        .unwrap();
    let headers = page.headers();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"),
        "{headers:?}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // Another site's form signing the browser in with a token of its choosing.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let refused = browser
            .post(format!("{}/ui/login", api.base))
            .header(name, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{name}");
        assert!(refused.headers().get("set-cookie").is_none());
    }

    let signed_in = browser
        .post(format!("{}/ui/login", api.base))
        .header("origin", api.base.as_str())
        .header("x-forwarded-proto", "https")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure"),
        "{cookie}"
    );
    let secret = api.viewer.rsplit('_').next().unwrap();
    assert!(
        !cookie.contains(secret),
        "the cookie holds the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let listing = browser
        .get(format!("{}/ui", api.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), StatusCode::OK);
    // A bare token in the cookie opens nothing.
    let forged = browser
        .get(format!("{}/ui", api.base))
        .header("cookie", format!("sluice_session={}", api.viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);

    // Revoking the token ends the sessions opened with it.
    let id = api.viewer.split('_').nth(1).unwrap();
    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let ended = browser
        .get(format!("{}/ui", api.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    api.fleet.cleanup().await;
}
