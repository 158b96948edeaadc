//! The web page in headless Chromium (driven through chromedriver): sign in with a token,
//! filter the runs to the failed one, open it and see why it failed; open a partly rejected
//! run and see its rejected rows with their reasons; sync and pause an import from its page as
//! an operator, which a viewer can neither see nor do. Screenshots of each page are kept in
//! `target/ui-screenshots/`.

mod common;

use common::Fleet;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a port of its own, stopped on drop.
struct Driver {
    port: u16,
    child: Child,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by deploy/test.sh (Debian's chromium-driver)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { port, child }
    }

    async fn browser(&self) -> Client {
        // chromedriver is reached over plain HTTP, but the client's TLS stack wants a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_string(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the element `locator` names, once the page shows it (a click that navigates
/// returns before the next page has loaded).
async fn text(browser: &Client, locator: Locator<'_>) -> String {
    let started = Instant::now();
    loop {
        let element = browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(locator)
            .await
            .unwrap();
        // The page the element was found on may be replaced before its text is read.
        match element.text().await {
            Ok(text) => return text,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reading an element's text: {e}"),
        }
    }
}

/// Clicks the element `locator` names, once the page shows it.
async fn click(browser: &Client, locator: Locator<'_>) {
    let element = browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(locator)
        .await
        .unwrap();
    element.click().await.unwrap();
}

/// Waits until the browser's address contains `part`: the page a form or link leads to has
/// replaced the one it was on.
async fn arrive(browser: &Client, part: &str) {
    let started = Instant::now();
    loop {
        let url = browser.current_url().await.unwrap();
        if url.as_str().contains(part) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never reached a page at {part}; still at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves the element `locator` names as `target/ui-screenshots/<name>.png`.
async fn screenshot_of(browser: &Client, locator: Locator<'_>, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let element = browser.find(locator).await.unwrap();
    let png = element.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Saves the page as `target/ui-screenshots/<name>.png`.
async fn screenshot(browser: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_listing_filters_to_a_failed_run_and_shows_its_errors() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 500).await;
    let strict = common::users_spec(&fleet, 400)
        .replace("name: users", "name: strict")
        .replace(
            "column: birthday, type: date",
            "column: first_name, type: date",
        );
    fleet.apply_ok(&common::users_spec(&fleet, 400));
    fleet.apply_ok(&strict);
    let token = fleet.token("acme", "viewer");
    let port = common::free_port();
    fleet.start(
        "all",
        &[
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--max-attempts",
            "1",
        ],
    );
    let partial = fleet.run("acme", "strict");
    assert_eq!(partial["status"], "partially_succeeded", "{partial}");
    warehouse
        .batch_execute("DROP TABLE public.users")
        .await
        .unwrap();
    let failed = fleet.run("acme", "users");
    assert_eq!(failed["status"], "failed", "{failed}");

    let driver = Driver::start();
    let browser = driver.browser().await;
    let base = format!("http://127.0.0.1:{port}");
    browser.goto(&format!("{base}/ui")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/ui/login"),
        "signed out at first"
    );
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    click(&browser, Locator::Id("sign-in")).await;
    let listing = text(&browser, Locator::Id("imports")).await;
    assert!(
        listing.contains("strict") && listing.contains("users"),
        "{listing}"
    );
    assert!(
        listing.contains("0%") || listing.contains("100%"),
        "health is shown: {listing}"
    );
    screenshot(&browser, "listing").await;

    click(&browser, Locator::Css("#status option[value=failed]")).await;
    click(&browser, Locator::Id("apply-filters")).await;
    arrive(&browser, "status=failed").await;
    let runs = text(&browser, Locator::Id("runs")).await;
    assert!(runs.contains(failed["run_id"].as_str().unwrap()), "{runs}");
    assert!(
        !runs.contains(partial["run_id"].as_str().unwrap()),
        "only failed runs: {runs}"
    );
    screenshot(&browser, "listing-failed").await;

    click(&browser, Locator::Css("a.run-link")).await;
    arrive(&browser, "/ui/runs/").await;
    let why = text(&browser, Locator::Id("run-error")).await;
    assert!(why.contains("missing_object"), "{why}");
    let hint = text(&browser, Locator::Id("run-hint")).await;
    assert!(hint.contains("exists") && hint.contains("SELECT"), "{hint}");
    screenshot(&browser, "failed-run").await;

    browser
        .goto(&format!(
            "{base}/ui/runs/{}",
            partial["run_id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    let errors = text(&browser, Locator::Id("errors")).await;
    assert!(
        errors.contains("first_name") && errors.contains("invalid_value"),
        "{errors}"
    );
    let csv = browser
        .find(Locator::Id("errors-csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert!(csv.unwrap().ends_with("/errors.csv"));
    screenshot(&browser, "partial-run").await;
    browser.close().await.unwrap();
    fleet.cleanup().await;
}

/// Changes the first ten users' names, for a dry run to have something to show.
async fn warehouse_change(fleet: &Fleet) {
    fleet
        .warehouse()
        .await
        .batch_execute(
            "UPDATE public.users SET first_name = 'Renamed', updated_at = now() - interval '1 minute'
              WHERE id <= 10",
        )
        .await
        .unwrap();
}

/// Starts the fleet with its API and page on a port of their own; the page's base URL.
async fn serve(fleet: &mut Fleet) -> String {
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&base).await;
    base
}

/// Signs `browser` in at `base` with `token`.
async fn sign_in(browser: &Client, base: &str, token: &str) {
    browser.goto(&format!("{base}/ui/login")).await.unwrap();
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(browser, Locator::Id("sign-in")).await;
    arrive(browser, "/ui").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_syncs_and_pauses_an_import_from_its_page_and_a_viewer_cannot() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 500).await;
    let scheduled = common::users_spec(&fleet, 400).replace(
        "    settle_lag: 1s\n",
        "    settle_lag: 1s\n    schedule: { cron: \"0 3 * * *\" }\n",
    );
    let out = fleet.apply_with(&scheduled, &["--ready"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let operator = fleet.token("acme", "operator");
    let viewer = fleet.token("acme", "viewer");
    let base = serve(&mut fleet).await;

    let driver = Driver::start();
    let browser = driver.browser().await;
    sign_in(&browser, &base, &operator).await;
    click(&browser, Locator::Css("a.import-link")).await;
    arrive(&browser, "/ui/imports/users").await;
    assert_eq!(text(&browser, Locator::Id("state")).await, "scheduled");
    screenshot(&browser, "import").await;

    // Sync now: the run's page follows the run to its end.
    click(&browser, Locator::Id("action-run")).await;
    arrive(&browser, "/ui/runs/").await;
    let started = Instant::now();
    loop {
        let status = text(&browser, Locator::Id("status")).await;
        if status == "succeeded" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not succeed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    common::assert_store_equals_source(&fleet).await;

    // A dry run's page shows what it would do to sample rows.
    warehouse_change(&fleet).await;
    browser
        .goto(&format!("{base}/ui/imports/users"))
        .await
        .unwrap();
    click(&browser, Locator::Id("action-dry_run")).await;
    arrive(&browser, "/ui/runs/").await;
    let sample = text(&browser, Locator::Id("sample")).await;
    assert!(
        sample.contains("user-1") && sample.contains("updated"),
        "{sample}"
    );
    screenshot(&browser, "dry-run").await;

    // Pause: the import is paused, and its page says who did it.
    browser
        .goto(&format!("{base}/ui/imports/users"))
        .await
        .unwrap();
    click(&browser, Locator::Id("action-pause")).await;
    // The page comes back to itself: wait for the button a paused import offers.
    let started = Instant::now();
    loop {
        let source = browser.source().await.unwrap();
        if source.contains("id=\"action-resume\"") {
            assert!(source.contains("id=\"state\" class=\"paused\""), "{source}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not paused: {source}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let changes = text(&browser, Locator::Id("transitions")).await;
    assert!(
        changes
            .lines()
            .any(|line| line.contains("api:") && line.contains("scheduled paused")),
        "{changes}"
    );
    assert_eq!(fleet.import_view("users")["state"], "paused");
    screenshot(&browser, "import-paused").await;

    // Its next slot comes (the clock moved to it by hand): a paused import does not fire,
    // where a scheduled one fires within the scheduler's second.
    let control = fleet.control().await;
    let runs = "SELECT count(*) FROM control.runs r JOIN control.imports i ON i.id = r.import_id
                 WHERE i.name = 'users'";
    let before: i64 = control.query_one(runs, &[]).await.unwrap().get(0);
    control
        .execute(
            "UPDATE control.imports SET next_fire_at = now() - interval '1 second' WHERE name = 'users'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: i64 = control.query_one(runs, &[]).await.unwrap().get(0);
    assert_eq!(after, before, "the paused import's slot did not fire");
    browser.close().await.unwrap();

    // A viewer sees no action, and the server refuses a viewer's post even with the page's
    // token; a post without the page's token is refused whoever sends it.
    let viewing = common::UiClient::sign_in(&base, &viewer).await;
    let listing = viewing.page("/ui").await;
    assert!(listing.contains("id=\"imports\""), "{listing}");
    assert!(!listing.contains("new-import"), "no builder for viewers");
    assert_eq!(viewing.get("/ui/imports/new").await.status(), 403);
    let seen = viewing.page("/ui/imports/users").await;
    assert!(seen.contains("id=\"state\""), "{seen}");
    assert!(!seen.contains("id=\"actions\""), "{seen}");
    assert!(
        !seen.contains(&fleet.warehouse_url()),
        "no connection secret"
    );
    let operating = common::UiClient::sign_in(&base, &operator).await;
    let zeros = "0".repeat(64);
    let forged = operating
        .post(
            "/ui/imports/users",
            &[("action", "resume"), ("csrf", &zeros)],
        )
        .await;
    assert_eq!(forged, 403, "a post without the page's token");
    let forged_build = operating
        .post(
            "/ui/imports/new",
            &[
                ("step", "save"),
                ("name", "forged"),
                ("source", "public.users"),
            ],
        )
        .await;
    assert_eq!(forged_build, 403, "a builder post without the page's token");
    let csrf = common::form_token(&operating.page("/ui/imports/users").await);
    // The viewer's page has no form, and the operator's page token is not its session's.
    let refused = viewing
        .post(
            "/ui/imports/users",
            &[("action", "resume"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused, 403);
    assert_eq!(
        fleet.import_view("users")["state"],
        "paused",
        "nothing changed"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_makes_a_connection_on_the_page_and_its_url_is_never_shown() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 10).await;
    fleet.apply_ok(&common::users_spec(&fleet, 400));
    let admin = fleet.token("acme", "admin");
    let base = serve(&mut fleet).await;

    let driver = Driver::start();
    let browser = driver.browser().await;
    sign_in(&browser, &base, &admin).await;
    click(&browser, Locator::Id("connections-link")).await;
    arrive(&browser, "/ui/connections").await;
    let listed = text(&browser, Locator::Id("connections")).await;
    assert!(listed.contains("wh"), "{listed}");

    // A user the server does not know: the page says `authentication` and keeps the name.
    let good = fleet.warehouse_url();
    let wrong = good.replace("postgres@", "nobody_here:s3cret-pw@");
    let fill = |name: &'static str, url: String| {
        let browser = &browser;
        async move {
            let field = browser.find(Locator::Id("connection-name")).await.unwrap();
            field.clear().await.unwrap();
            field.send_keys(name).await.unwrap();
            browser
                .find(Locator::Id("connection-url"))
                .await
                .unwrap()
                .send_keys(&url)
                .await
                .unwrap();
            click(browser, Locator::Id("create-connection")).await;
        }
    };
    fill("crm", wrong).await;
    let why = text(&browser, Locator::Id("connection-error")).await;
    assert!(why.contains("authentication"), "{why}");
    let source = browser.source().await.unwrap();
    assert!(!source.contains("s3cret-pw"), "the URL is never sent back");
    screenshot(&browser, "connection-refused").await;

    fill("crm", good.clone()).await;
    arrive(&browser, "/ui/connections").await;
    let started = Instant::now();
    while !text(&browser, Locator::Id("connections"))
        .await
        .contains("crm")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "crm not listed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    click(&browser, Locator::Id("test-button-crm")).await;
    let tested = text(&browser, Locator::Id("test-crm")).await;
    assert!(tested.starts_with("ok"), "{tested}");
    let source = browser.source().await.unwrap();
    assert!(!source.contains(&good), "no connection URL in the page");
    screenshot(&browser, "connections").await;

    // `wh` is read by an import: deleting it is refused, naming the import.
    click(&browser, Locator::Id("delete-wh")).await;
    let refused = text(&browser, Locator::Id("connection-error")).await;
    assert!(refused.contains("users"), "{refused}");

    // Signing out ends the session: the page asks to sign in again.
    browser.goto(&format!("{base}/ui")).await.unwrap();
    click(&browser, Locator::Id("sign-out")).await;
    arrive(&browser, "/ui/login").await;
    browser.goto(&format!("{base}/ui")).await.unwrap();
    arrive(&browser, "/ui/login").await;
    browser.close().await.unwrap();
    fleet.cleanup().await;
}

/// Selects `value` in the `<select>` with id `select`.
async fn choose(browser: &Client, select: &str, value: &str) {
    click(
        browser,
        Locator::Css(&format!("#{select} option[value=\"{value}\"]")),
    )
    .await;
}

/// Replaces the text of the input with id `input`.
async fn type_into(browser: &Client, input: &str, value: &str) {
    let field = browser.find(Locator::Id(input)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Waits until the run page shows a status that has ended, and returns it.
async fn ended(browser: &Client) -> String {
    let started = Instant::now();
    loop {
        let status = text(browser, Locator::Id("status")).await;
        let done = ["succeeded", "partially_succeeded", "failed", "cancelled"]
            .iter()
            .any(|s| status.starts_with(s));
        if done {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the run did not end: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The stored spec of each workspace's import `name`.
async fn stored_spec(fleet: &Fleet, workspace: &str, name: &str) -> serde_json::Value {
    fleet
        .control()
        .await
        .query_one(
            "SELECT i.spec FROM control.imports i JOIN control.workspaces w ON w.id = i.workspace_id
              WHERE w.name = $1 AND i.name = $2",
            &[&workspace, &name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_builds_an_import_on_the_page_from_a_preview_and_runs_it() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 1000).await;
    // A text date column, one value of which is not a date in its format.
    warehouse
        .batch_execute(
            "ALTER TABLE public.users ADD COLUMN signup text;
             UPDATE public.users SET signup = to_char(date '2020-01-01' + (id % 1500)::int, 'DD/MM/YYYY');
             UPDATE public.users SET signup = '31/02/2025' WHERE id = 537;
             DROP INDEX public.users_watermark;",
        )
        .await
        .unwrap();
    fleet.apply_ok("workspace: acme\n");
    let admin = fleet.token("acme", "admin");
    let base = serve(&mut fleet).await;

    let driver = Driver::start();
    let browser = driver.browser().await;
    sign_in(&browser, &base, &admin).await;

    // The connection: a user the server does not know first.
    click(&browser, Locator::Id("connections-link")).await;
    arrive(&browser, "/ui/connections").await;
    // Its fields rather than a URL: host, port, database, user and password.
    let good = fleet.warehouse_url();
    let database = good.rsplit('/').next().unwrap().to_string();
    for (user, password) in [("nobody_here", "wrong"), ("postgres", "")] {
        type_into(&browser, "connection-name", "crm").await;
        type_into(&browser, "connection-host", "127.0.0.1").await;
        type_into(&browser, "connection-database", &database).await;
        type_into(&browser, "connection-user", user).await;
        type_into(&browser, "connection-password", password).await;
        click(&browser, Locator::Id("create-connection")).await;
        if user != "postgres" {
            let why = text(&browser, Locator::Id("connection-error")).await;
            assert!(why.contains("authentication"), "{why}");
            let source = browser.source().await.unwrap();
            assert!(!source.contains("wrong"), "the password is never sent back");
        }
    }
    arrive(&browser, "/ui/connections").await;
    let started = Instant::now();
    while !text(&browser, Locator::Id("connections"))
        .await
        .contains("crm")
    {
        assert!(started.elapsed() < Duration::from_secs(30), "crm not saved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The builder: preview the table, pick up what it suggests, type one date.
    browser.goto(&format!("{base}/ui")).await.unwrap();
    click(&browser, Locator::Id("new-import")).await;
    arrive(&browser, "/ui/imports/new").await;
    type_into(&browser, "import-name", "members").await;
    type_into(&browser, "source", "public.users").await;
    click(&browser, Locator::Id("preview")).await;
    let previewed = text(&browser, Locator::Id("preview-rows")).await;
    assert!(
        previewed.contains("user-1") && previewed.contains("Int64"),
        "{previewed}"
    );
    let warning = text(&browser, Locator::Id("index-statement")).await;
    assert!(
        warning.contains("CREATE INDEX") && warning.contains("updated_at"),
        "{warning}"
    );
    let row = |field: &str| format!("prop-{}-{field}", 3);
    let signup = browser
        .find(Locator::Id(&row("name")))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(signup.as_deref(), Some("signup"));
    type_into(&browser, "prop-1-name", "points").await;
    choose(&browser, &row("type"), "date").await;
    type_into(&browser, &row("format"), "dd/MM/yyyy").await;
    screenshot(&browser, "builder-preview").await;
    let source = browser.source().await.unwrap();
    assert!(!source.contains(&good), "no connection URL in the builder");
    click(&browser, Locator::Id("check")).await;
    let parsed = text(&browser, Locator::Id("parse-3")).await;
    assert!(parsed.contains("999 of 1000 read"), "{parsed}");
    assert!(parsed.contains("31/02/2025 → rejected"), "{parsed}");
    let summary = text(&browser, Locator::Id("trial-summary")).await;
    assert!(summary.contains("1 of 1000"), "{summary}");
    screenshot(&browser, "builder").await;
    screenshot_of(&browser, Locator::Id("properties"), "builder-mapping").await;

    // The bad value is fixed at the source; the schedule shows its next fire times.
    warehouse
        .batch_execute("UPDATE public.users SET signup = '28/02/2025' WHERE id = 537")
        .await
        .unwrap();
    choose(&browser, "schedule-kind", "cron").await;
    type_into(&browser, "schedule", "0 6 * * *").await;
    type_into(&browser, "schedule-timezone", "Asia/Tokyo").await;
    click(&browser, Locator::Id("check")).await;
    let summary = text(&browser, Locator::Id("trial-summary")).await;
    assert!(summary.contains("All 1000"), "{summary}");
    let upcoming = text(&browser, Locator::Id("upcoming")).await;
    assert_eq!(upcoming.matches("T21:00:00Z").count(), 5, "{upcoming}");
    assert_eq!(upcoming.matches("T06:00:00+09:00").count(), 5, "{upcoming}");
    click(&browser, Locator::Id("save")).await;
    arrive(&browser, "/ui/imports/members").await;
    assert_eq!(text(&browser, Locator::Id("state")).await, "draft");

    // Dry run, then sync: the run page shows the counts, and the store equals the source.
    click(&browser, Locator::Id("action-dry_run")).await;
    arrive(&browser, "/ui/runs/").await;
    assert!(ended(&browser).await.starts_with("succeeded"));
    browser
        .goto(&format!("{base}/ui/imports/members"))
        .await
        .unwrap();
    assert_eq!(text(&browser, Locator::Id("state")).await, "scheduled");
    click(&browser, Locator::Id("action-run")).await;
    arrive(&browser, "/ui/runs/").await;
    assert_eq!(ended(&browser).await, "succeeded");
    let stats = text(&browser, Locator::Id("stats")).await;
    assert!(stats.contains("profiles created 1000"), "{stats}");
    assert!(
        !stats.contains("events inserted"),
        "only profile stats: {stats}"
    );
    let facts = text(&browser, Locator::Id("run-facts")).await;
    assert!(facts.contains("requested by api:"), "{facts}");
    screenshot(&browser, "builder-run").await;
    common::assert_store_equals_source(&fleet).await;
    let signup: Option<String> = fleet
        .control()
        .await
        .query_one(
            "SELECT p.properties->>'signup' FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.kind = 'external_id' AND i.value = 'user-537'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(signup.as_deref(), Some("2025-02-28"));
    let source = browser.source().await.unwrap();
    assert!(!source.contains(&good), "no connection URL in the page");

    // The listing: the run's rows and duration, its health, and its bar in the chart.
    browser.goto(&format!("{base}/ui")).await.unwrap();
    let imports = text(&browser, Locator::Id("imports")).await;
    assert!(
        imports.contains("100% 100%"),
        "health and 30 days: {imports}"
    );
    let bars = browser
        .find_all(Locator::Css("svg.chart rect.succeeded"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 1, "one finished run that is not a dry run");
    let runs = text(&browser, Locator::Id("runs")).await;
    assert!(runs.contains(" 1000 "), "rows read: {runs}");
    screenshot(&browser, "listing-builder").await;

    // Resync asks first, saying what the next run reads again; the move is on the page.
    browser
        .goto(&format!("{base}/ui/imports/members"))
        .await
        .unwrap();
    let recent = text(&browser, Locator::Id("recent-runs")).await;
    assert_eq!(recent.matches("api:").count(), 2, "who ran each: {recent}");
    click(&browser, Locator::Id("action-resync")).await;
    let asked = text(&browser, Locator::Id("confirm-text")).await;
    assert!(asked.contains("every row of table public.users"), "{asked}");
    click(&browser, Locator::Id("confirm")).await;
    let moves = text(&browser, Locator::Id("watermark-changes")).await;
    assert!(
        moves.contains("resync") && moves.contains("api:"),
        "{moves}"
    );
    assert!(fleet.import_view("members")["watermark"].is_null());
    browser.close().await.unwrap();

    // The downloaded YAML, applied to another workspace, makes the same import there.
    let cookie = common::ui_session(&base, &admin).await;
    let yaml = reqwest::Client::new()
        .get(format!("{base}/ui/imports/members/spec.yaml"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(yaml.contains("format: dd/MM/yyyy"), "{yaml}");
    fleet.apply_ok(&format!(
        "workspace: beta\nconnections:\n  - name: crm\n    kind: postgres\n    url: {good}\n"
    ));
    let file = std::env::temp_dir().join(format!("members-{}.yaml", common::free_port()));
    std::fs::write(&file, &yaml).unwrap();
    let out = fleet.sluice(&["apply", "-f", file.to_str().unwrap(), "--workspace", "beta"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        stored_spec(&fleet, "beta", "members").await,
        stored_spec(&fleet, "acme", "members").await
    );
    fleet.cleanup().await;
}
