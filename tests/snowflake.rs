//! The Snowflake connector through the whole fleet, against fakesnow's server mode (a
//! DuckDB-backed implementation of Snowflake's connector protocol) wrapped by
//! `tests/snowflake/server.py`, which checks passwords and key-pair JWTs, registers public keys
//! with `ALTER USER`, and splits large answers into gzip'd result chunks as Snowflake does.

mod common;

use common::{Fleet, StoredProfile};
use sluice_extractor::snowflake::{Client, Settings};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "sluice_loader";
const PASSWORD: &str = "correct horse";

/// A running Snowflake stand-in, stopped on drop.
struct FakeSnowflake {
    port: u16,
    child: Child,
}

impl FakeSnowflake {
    fn start() -> FakeSnowflake {
        let root = env!("CARGO_MANIFEST_DIR");
        let python = std::env::var("SLUICE_FAKESNOW_PYTHON")
            .unwrap_or_else(|_| format!("{root}/target/fakesnow/bin/python"));
        assert!(
            std::path::Path::new(&python).exists(),
            "{python} is missing: deploy/test.sh installs fakesnow (tests/snowflake/requirements.txt)"
        );
        // The stand-in binds a port the system picks and prints it: no two tests share one.
        let mut child = Command::new(python)
            .arg(format!("{root}/tests/snowflake/server.py"))
            .args(["--port", "0", "--user", USER])
            .args(["--password", PASSWORD, "--chunk-rows", "10000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Snowflake stand-in");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the stand-in printed {line:?}, not its port"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the stand-in exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the stand-in did not listen"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        FakeSnowflake { port, child }
    }

    /// A connection URL for `database` with the given credentials part (`user:password`).
    fn url(&self, credentials: &str, database: &str) -> String {
        format!(
            "snowflake://{credentials}@acme-test/{database}/PUBLIC?warehouse=LOAD_WH&host=127.0.0.1&port={}&protocol=http",
            self.port
        )
    }

    async fn client(&self, database: &str) -> Client {
        let password = PASSWORD.replace(' ', "%20");
        Client::login(Settings::parse(&self.url(&format!("{USER}:{password}"), database)).unwrap())
            .await
            .unwrap()
    }
}

impl Drop for FakeSnowflake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `users` with rows `1..=rows`: rows 50,001 to 55,000 share one updated_at (ties
/// across chunk boundaries), every 97th row has no first name.
async fn create_users(client: &Client, rows: i64) {
    client
        .execute(
            "CREATE TABLE users (id NUMBER(38,0), external_id VARCHAR, first_name VARCHAR,
                loyalty_points NUMBER(10,0), birthday DATE, updated_at TIMESTAMP_NTZ(9))",
        )
        .await
        .unwrap();
    let epoch = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
    let birth = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    for start in (1..=rows).step_by(5_000) {
        let values: Vec<String> = (start..(start + 5_000).min(rows + 1))
            .map(|id| {
                let updated = if (50_001..=55_000).contains(&id) {
                    "2024-03-01 12:00:00".to_string()
                } else {
                    (epoch + chrono::Duration::microseconds(id * 37_000))
                        .format("%Y-%m-%d %H:%M:%S%.6f")
                        .to_string()
                };
                let name = if id % 97 == 0 {
                    "NULL".to_string()
                } else {
                    format!("'Name {id}'")
                };
                let birthday = birth + chrono::Duration::days(id % 15_000);
                format!(
                    "({id}, 'user-{id}', {name}, {}, '{birthday}', '{updated}')",
                    id * 7 % 1000
                )
            })
            .collect();
        client
            .execute(&format!("INSERT INTO users VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
}

/// The source table as `StoredProfile`s, read back through the connector's client.
async fn source_profiles(client: &Client) -> Vec<StoredProfile> {
    use arrow::array::AsArray;
    let mut rows = Vec::new();
    client
        .stream_query(
            "SELECT external_id, first_name, CAST(loyalty_points AS VARCHAR), CAST(birthday AS VARCHAR) FROM users",
            |batch| {
                let text = |i: usize| batch.column(i).as_string::<i32>().clone();
                let (e, f, p, b) = (text(0), text(1), text(2), text(3));
                for r in 0..batch.num_rows() {
                    let get = |c: &arrow::array::StringArray| {
                        arrow::array::Array::is_valid(c, r).then(|| c.value(r).to_string())
                    };
                    rows.push((e.value(r).to_string(), get(&f), get(&p), get(&b)));
                }
                async { Ok(()) }
            },
        )
        .await
        .unwrap();
    rows.sort();
    rows
}

fn spec(fleet: &Fleet, url: &str) -> String {
    common::users_spec(fleet, 25_000)
        .replace("kind: postgres", "kind: snowflake")
        .replace(&fleet.warehouse_url(), &format!("\"{url}\""))
        .replace("public.users", "users")
        .replace(", format: \"yyyy-MM-dd\"", "")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snowflake_table_with_ties_imports_exactly_and_then_only_its_changes() {
    let snowflake = FakeSnowflake::start();
    let mut fleet = Fleet::new().await;
    let database = format!("DB_{}", fleet.id).to_uppercase();
    let client = snowflake.client(&database).await;
    create_users(&client, 60_000).await;
    let password = PASSWORD.replace(' ', "%20");
    fleet.apply_ok(&spec(
        &fleet,
        &snowflake.url(&format!("{USER}:{password}"), &database),
    ));

    let preview = fleet.sluice(&["imports", "preview", "users", "--workspace", "acme"]);
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(text.contains("first_name: Utf8"), "{text}");
    assert!(text.contains("loyalty_points: Int64"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("user-")).count(),
        10,
        "{text}"
    );
    assert!(
        text.contains("user-1 ") && !text.contains("user-11 "),
        "{text}"
    );

    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 60_000, "{first}");
    assert_eq!(
        common::stored_profiles(&fleet).await,
        source_profiles(&client).await
    );

    client
        .execute(
            "UPDATE users SET first_name = 'Changed ' || CAST(id AS VARCHAR),
                    updated_at = DATEADD(minute, -1, SYSDATE()) WHERE id % 10 = 0",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 6_000,
        "only changed rows are read: {second}"
    );
    assert_eq!(
        common::stored_profiles(&fleet).await,
        source_profiles(&client).await
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snowflake_connection_failures_are_classified() {
    let snowflake = FakeSnowflake::start();
    let fleet = Fleet::new().await;
    let database = format!("DB_{}", fleet.id).to_uppercase();
    create_users(&snowflake.client(&database).await, 10).await;
    let password = PASSWORD.replace(' ', "%20");
    let good = snowflake.url(&format!("{USER}:{password}"), &database);
    let cases = [
        (
            spec(&fleet, &snowflake.url(&format!("{USER}:wrong"), &database)),
            "refused the credentials",
        ),
        (
            spec(
                &fleet,
                &good.replace(&format!("port={}", snowflake.port), "port=1"),
            ),
            "unreachable",
        ),
        (
            spec(&fleet, &good).replace(
                "source: { table: users }",
                "source: { table: no_such_table }",
            ),
            "missing object",
        ),
    ];
    common::assert_refused_within_timeout(&fleet, &cases);
    fleet.cleanup().await;
}

/// The text after `prefix` on the line that holds it.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} in {text}"));
    text[at..].lines().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_pair_takes_over_only_once_it_logs_in() {
    let snowflake = FakeSnowflake::start();
    let mut fleet = Fleet::new().await;
    let database = format!("DB_{}", fleet.id).to_uppercase();
    let client = snowflake.client(&database).await;
    create_users(&client, 1_000).await;
    let password = PASSWORD.replace(' ', "%20");
    fleet.apply_ok(&spec(
        &fleet,
        &snowflake.url(&format!("{USER}:{password}"), &database),
    ));
    let keygen = |fleet: &Fleet| {
        let out = fleet.sluice(&["connections", "keygen", "wh", "--workspace", "acme"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let test = |fleet: &Fleet| {
        let out = fleet.sluice(&["connections", "test", "wh", "--workspace", "acme"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    let printed = keygen(&fleet);
    let statement = line_after(&printed, "ALTER USER").to_string();
    assert!(statement.contains("SET RSA_PUBLIC_KEY = '"), "{printed}");
    let before = test(&fleet);
    assert!(before.contains("the new key was refused"), "{before}");
    assert!(
        before.contains("wh: ok"),
        "the password stays in use: {before}"
    );

    client.execute(&statement).await.unwrap();
    let promoted = test(&fleet);
    assert!(promoted.contains("ok with the new key"), "{promoted}");

    // The password is gone from the stored connection: runs log in with the key alone.
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_read"], 1_000, "{run}");

    // A second rotation goes to the other slot; the first key keeps working meanwhile.
    let printed = keygen(&fleet);
    let statement = line_after(&printed, "ALTER USER").to_string();
    assert!(statement.contains("SET RSA_PUBLIC_KEY_2 = '"), "{printed}");
    assert!(test(&fleet).contains("wh: ok"));
    client.execute(&statement).await.unwrap();
    let promoted = test(&fleet);
    let retire = line_after(&promoted, "ALTER USER").to_string();
    assert!(retire.contains("UNSET RSA_PUBLIC_KEY;"), "{promoted}");
    client.execute(&retire).await.unwrap();
    assert!(test(&fleet).contains("wh: ok"), "the new key alone logs in");

    // A spec naming neither password nor key keeps the stored key.
    fleet.apply_ok(&spec(&fleet, &snowflake.url(USER, &database)));
    assert!(test(&fleet).contains("wh: ok"));
    fleet.cleanup().await;
}
