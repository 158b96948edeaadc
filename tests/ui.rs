//! The run listing web page in headless Chromium (driven through chromedriver): sign in with
//! a token, filter the runs to the failed one, open it and see why it failed; open a partly
//! rejected run and see its rejected rows with their reasons. Screenshots of each page are
//! kept in `target/ui-screenshots/`.

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
    let element = browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(locator)
        .await
        .unwrap();
    element.text().await.unwrap()
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
