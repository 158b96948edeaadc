//! A fleet for one test: its own control database, warehouse database, queue names and data
//! directory, and `sluice` processes started from the built binary.

#![allow(dead_code)]

pub mod activity;
pub mod broker;
pub mod database;
pub mod hosts;
pub mod mariadb;
pub mod platforms;
pub mod smtp;
pub mod sshd;
pub mod stand_in;

use rand::RngCore;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

pub const PG: &str = "postgres://postgres@127.0.0.1:5432";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the HTTP API at `base` answers, for up to 30 seconds.
pub async fn wait_for_api(base: &str) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the API at {base} did not listen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One test's isolated fleet.
pub struct Fleet {
    pub id: String,
    pub data_dir: PathBuf,
    /// The PostgreSQL server (`postgres://user@host:port`) and RabbitMQ URL the fleet uses.
    pg: String,
    amqp: String,
    master_key: String,
    /// Settings every process of the fleet is given besides the usual ones.
    env: Vec<(String, String)>,
    children: Vec<(String, Child)>,
    released: bool,
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Fleet {
    /// A new fleet with empty databases, on the machine's PostgreSQL and RabbitMQ.
    pub async fn new() -> Fleet {
        Fleet::on(PG, AMQP).await
    }

    /// A new fleet with empty databases on the PostgreSQL server `pg` and the broker `amqp`.
    pub async fn on(pg: &str, amqp: &str) -> Fleet {
        let id = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let data_dir = std::env::temp_dir().join(format!("sluice-{id}"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let admin = connect(&format!("{pg}/postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE wh_{id}"))
            .await
            .unwrap();
        Fleet {
            id,
            data_dir,
            pg: pg.to_string(),
            amqp: amqp.to_string(),
            master_key: key.iter().map(|b| format!("{b:02x}")).collect(),
            env: Vec::new(),
            children: Vec::new(),
            released: false,
        }
    }

    /// The master key (64 hex characters) every process of the fleet is given.
    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    pub fn database_url(&self) -> String {
        format!("{}/sluice_{}", self.pg, self.id)
    }

    pub fn warehouse_url(&self) -> String {
        format!("{}/wh_{}", self.pg, self.id)
    }

    pub async fn warehouse(&self) -> Client {
        connect(&self.warehouse_url()).await
    }

    pub async fn control(&self) -> Client {
        connect(&self.database_url()).await
    }

    /// Gives every process and command of the fleet from now on the setting `name`.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_string(), value.to_string()));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(Command::new(env!("CARGO_BIN_EXE_sluice")), args)
    }

    /// `cmd` (the binary, or a wrapper running it) with `args` and the fleet's settings.
    fn command_with(&self, mut cmd: Command, args: &[&str]) -> Command {
        cmd.args(args)
            .env("SLUICE_DATABASE_URL", self.database_url())
            .env("SLUICE_AMQP_URL", &self.amqp)
            .env("SLUICE_AMQP_PREFIX", format!("sluice_{}", self.id))
            .env("SLUICE_DATA_DIR", &self.data_dir)
            .env("SLUICE_MASTER_KEY", &self.master_key)
            // Each fleet has its own saved defaults, and none from the machine's user.
            .env("SLUICE_CONFIG", self.data_dir.join("config.yaml"))
            .env_remove("SLUICE_WORKSPACE")
            .env("SLUICE_RETRY_BASE_MS", "100")
            // Each coordinator serves its API on a port of its own unless a test names one.
            .env("SLUICE_HTTP_ADDR", "127.0.0.1:0")
            .env("SLUICE_LOG", "info,lapin=warn,tokio_postgres=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts a long-running role on another host: inside its network namespace, with a data
    /// directory of its own. Its log is `ROLE@HOST.log` in the fleet's directory.
    pub fn start_on(&mut self, host: &hosts::Host, role: &str, env: &[(&str, &str)]) {
        let name = format!("{role}@{}", host.netns);
        let data_dir = self.data_dir.join(&name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = std::fs::File::create(self.data_dir.join(format!("{name}.log"))).unwrap();
        let child = self
            .command_with(host.command(env!("CARGO_BIN_EXE_sluice")), &[role])
            .env("SLUICE_DATA_DIR", &data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sluice starts");
        self.children.push((name, child));
    }

    /// Runs a `sluice` command to completion.
    pub fn sluice(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("sluice runs")
    }

    /// Runs a `sluice` command that must succeed and prints JSON (`--output json`); its answer.
    pub fn sluice_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.sluice(args);
        assert!(
            out.status.success(),
            "sluice {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sluice {} printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs a `sluice` command to completion with extra environment variables.
    pub fn sluice_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command.output().expect("sluice runs")
    }

    /// Applies a spec given as text, its new imports ready at once (`--ready`).
    pub fn apply(&self, spec: &str) -> Output {
        self.apply_with(spec, &["--ready"])
    }

    /// Applies a spec given as text with extra flags (none: new imports are drafts).
    pub fn apply_with(&self, spec: &str, extra: &[&str]) -> Output {
        let path = self.data_dir.join("spec.yaml");
        std::fs::write(&path, spec).unwrap();
        let mut args = vec!["apply", "-f", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.sluice(&args)
    }

    /// Applies a spec and fails the test if it is refused.
    pub fn apply_ok(&self, spec: &str) {
        let out = self.apply(spec);
        assert!(
            out.status.success(),
            "spec refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A spec for workspace `acme` with the warehouse connection `wh` and the given imports
    /// (YAML list items, indented by two spaces).
    pub fn spec(&self, imports: &str) -> String {
        format!(
            "workspace: acme\nconnections:\n  - name: wh\n    kind: postgres\n    url: {}\nimports:\n{imports}",
            self.warehouse_url()
        )
    }

    /// A new API token of `workspace` with `role`, as `sluice tokens create` prints it.
    pub fn token(&self, workspace: &str, role: &str) -> String {
        let out = self.sluice(&[
            "tokens",
            "create",
            "--workspace",
            workspace,
            "--role",
            role,
            "--name",
            "test",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Starts a long-running role (`all`, `coordinator`, `loader`, ...), logging to a file.
    pub fn start(&mut self, role: &str, extra: &[&str]) {
        self.start_with_env(role, extra, &[]);
    }

    /// Starts a long-running role with extra environment variables.
    pub fn start_with_env(&mut self, role: &str, extra: &[&str], env: &[(&str, &str)]) {
        self.spawn(role, extra, &[], env);
    }

    /// Starts a long-running role without the settings in `unset`, and with extra
    /// environment variables.
    pub fn start_without(&mut self, role: &str, unset: &[&str], env: &[(&str, &str)]) {
        self.spawn(role, &[], unset, env);
    }

    fn spawn(&mut self, role: &str, extra: &[&str], unset: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join(format!("{role}.log")))
            .unwrap();
        let mut args = vec![role];
        args.extend_from_slice(extra);
        let mut command = self.command(&args);
        for name in unset {
            command.env_remove(name);
        }
        let child = command
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sluice starts");
        self.children.push((role.to_string(), child));
    }

    /// Kills a role's process with SIGKILL.
    pub fn kill(&mut self, role: &str) {
        let index = self
            .children
            .iter()
            .position(|(r, _)| r == role)
            .expect("role is running");
        let (_, mut child) = self.children.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Runs an import and waits for it; returns the run summary.
    pub fn run(&self, workspace: &str, import: &str) -> serde_json::Value {
        self.run_with(workspace, import, &[])
    }

    /// Runs an import with extra flags (`--dry-run`) and waits for it.
    pub fn run_with(&self, workspace: &str, import: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "run",
            import,
            "--workspace",
            workspace,
            "--wait",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = self.sluice(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "run output was not JSON: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// `sluice imports show IMPORT --workspace acme --output json`.
    pub fn import_view(&self, import: &str) -> serde_json::Value {
        let out = self.sluice(&[
            "imports",
            "show",
            import,
            "--workspace",
            "acme",
            "--output",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "imports show failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Requests a run without waiting for it; returns the run id.
    pub fn request_run(&self, workspace: &str, import: &str) -> String {
        let out = self.sluice(&["run", import, "--workspace", workspace, "--output", "json"]);
        let requested: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                panic!(
                    "run request failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        requested["run_id"].as_str().unwrap().to_string()
    }

    /// A run's status now (empty before the coordinator has recorded it).
    pub async fn run_status(&self, run_id: &str) -> String {
        let run_id: uuid::Uuid = run_id.parse().unwrap();
        self.control()
            .await
            .query_opt("SELECT status FROM control.runs WHERE id = $1", &[&run_id])
            .await
            .unwrap()
            .map(|r| r.get(0))
            .unwrap_or_default()
    }

    /// Waits until at least `chunks` chunks of a run are loaded.
    pub async fn wait_for_loaded_chunks(&self, run_id: &str, chunks: i64, timeout: Duration) {
        let control = self.control().await;
        let run_id: uuid::Uuid = run_id.parse().unwrap();
        let start = Instant::now();
        loop {
            let loaded: i64 = control
                .query_one(
                    "SELECT count(*) FROM control.chunks WHERE run_id = $1 AND status = 'loaded'",
                    &[&run_id],
                )
                .await
                .unwrap()
                .get(0);
            if loaded >= chunks {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{chunks} chunks of run {run_id} were not loaded in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a run to end, polling the control plane.
    pub async fn wait_for_run(&self, run_id: &str, timeout: Duration) -> String {
        let control = self.control().await;
        let run_id: uuid::Uuid = run_id.parse().unwrap();
        let start = Instant::now();
        loop {
            let row = control
                .query_opt("SELECT status FROM control.runs WHERE id = $1", &[&run_id])
                .await
                .unwrap();
            if let Some(row) = row {
                let status: String = row.get(0);
                if !["queued", "planning", "running"].contains(&status.as_str()) {
                    return status;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "run {run_id} did not end in {timeout:?}; logs in {}",
                self.data_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every process, drops the databases and deletes the queues. A fleet dropped
    /// without it (a failed test) does the same in its `Drop`.
    pub async fn cleanup(mut self) {
        self.stop_processes();
        release(&self.id, &self.data_dir, &self.pg, &self.amqp).await;
        self.released = true;
    }

    fn stop_processes(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

/// Drops a fleet's databases, deletes its queues and its data directory.
async fn release(id: &str, data_dir: &std::path::Path, pg: &str, amqp: &str) {
    let Ok((admin, connection)) = tokio_postgres::connect(&format!("{pg}/postgres"), NoTls).await
    else {
        let _ = std::fs::remove_dir_all(data_dir);
        return;
    };
    tokio::spawn(connection);
    for db in [format!("sluice_{id}"), format!("wh_{id}")] {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await;
    }
    let topology = sluice_proto::Topology::new(format!("sluice_{id}"));
    if let Ok(bus) = sluice_proto::Bus::connect(amqp, &topology).await {
        if let Ok(channel) = bus.channel().await {
            let _ = topology.delete(&channel).await;
        }
        bus.close().await;
    }
    let _ = std::fs::remove_dir_all(data_dir);
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_processes();
        if self.released {
            return;
        }
        // A failed test leaves nothing behind either; its logs are kept when SLUICE_KEEP is set.
        if std::env::var_os("SLUICE_KEEP").is_some() {
            return;
        }
        let (id, data_dir) = (self.id.clone(), self.data_dir.clone());
        let (pg, amqp) = (self.pg.clone(), self.amqp.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(release(&id, &data_dir, &pg, &amqp));
            }
        })
        .join();
    }
}

/// Creates `public.users` with `rows` rows; rows 50,001..55,000 share one updated_at, and every
/// 97th row has no first name.
pub async fn create_users(warehouse: &Client, rows: i64) {
    warehouse
        .batch_execute(
            "CREATE TABLE public.users (
                id bigint PRIMARY KEY,
                external_id text NOT NULL,
                first_name text,
                loyalty_points integer,
                birthday date,
                updated_at timestamptz NOT NULL);
             CREATE INDEX users_watermark ON public.users (updated_at, id);",
        )
        .await
        .unwrap();
    warehouse
        .execute(
            "INSERT INTO public.users
             SELECT g, 'user-' || g, CASE WHEN g % 97 = 0 THEN NULL ELSE 'Name ' || g END,
                    (g * 7) % 1000, date '1970-01-01' + (g % 15000)::int,
                    CASE WHEN g BETWEEN 50001 AND 55000 THEN timestamptz '2024-03-01 12:00:00+00'
                         ELSE timestamptz '2024-01-01 00:00:00+00' + g * interval '1 millisecond' * 37 END
               FROM generate_series(1, $1::int8) g",
            &[&rows],
        )
        .await
        .unwrap();
}

/// Signs in to the web page at `base` with `token` as a browser would; the session cookie
/// (`name=value`) to send with later requests.
pub async fn ui_session(base: &str, token: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser
        .post(format!("{base}/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sluice_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("a session cookie")
}

/// A browser's session on the web page, as plain HTTP: its requests carry the session
/// cookie and follow no redirect.
pub struct UiClient {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl UiClient {
    /// Signs in at `base` with `token`.
    pub async fn sign_in(base: &str, token: &str) -> UiClient {
        UiClient {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookie: ui_session(base, token).await,
        }
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// The text of the page at `path`.
    pub async fn page(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// POSTs `form` to `path`; the answer's status.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::StatusCode {
        self.post_page(path, form).await.0
    }

    /// POSTs `form` to `path`; the answer's status and page.
    pub async fn post_page(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (reqwest::StatusCode, String) {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (answer.status(), answer.text().await.unwrap())
    }
}

/// The form token a page's forms carry.
pub fn form_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a form")
        .to_string()
}

/// Changes the type the schema registry holds for a profile property, as an operator fixing a
/// type conflict does.
pub async fn retype(fleet: &Fleet, property: &str, kind: &str) {
    let changed = fleet
        .control()
        .await
        .execute(
            "UPDATE profile_store.property_types SET type = $2 WHERE name = $1",
            &[&property, &kind],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1, "the registry holds {property}");
}

/// The spec importing `public.users` as profiles.
pub fn users_spec(fleet: &Fleet, chunk_rows: u64) -> String {
    format!(
        r#"workspace: acme
connections:
  - name: wh
    kind: postgres
    url: {}
imports:
  - name: users
    connection: wh
    source: {{ table: public.users }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    properties:
      first_name: {{ column: first_name, type: string }}
      points: {{ column: loyalty_points, type: integer }}
      birthday: {{ column: birthday, type: date, format: "yyyy-MM-dd" }}
    chunk_rows: {chunk_rows}
    settle_lag: 1s
"#,
        fleet.warehouse_url()
    )
}

const SOURCE_DIGEST: &str = "SELECT count(*), md5(coalesce(string_agg(
        concat_ws('|', external_id, first_name, loyalty_points::text, to_char(birthday, 'YYYY-MM-DD')),
        E'\\n' ORDER BY external_id), ''))
   FROM public.users";

const STORE_DIGEST: &str = "SELECT count(*), md5(coalesce(string_agg(
        concat_ws('|', i.value, p.properties->>'first_name', p.properties->>'points', p.properties->>'birthday'),
        E'\\n' ORDER BY i.value), ''))
   FROM profile_store.profiles p
   JOIN profile_store.identities i ON i.workspace_id = p.workspace_id AND i.profile_id = p.profile_id
  WHERE i.kind = 'external_id'";

/// (row count, md5 over rows ordered by key) of the source and of the profile store.
pub async fn digests(fleet: &Fleet) -> ((i64, String), (i64, String)) {
    let source = fleet
        .warehouse()
        .await
        .query_one(SOURCE_DIGEST, &[])
        .await
        .unwrap();
    let store = fleet
        .control()
        .await
        .query_one(STORE_DIGEST, &[])
        .await
        .unwrap();
    ((source.get(0), source.get(1)), (store.get(0), store.get(1)))
}

/// Asserts that the profile store holds exactly the source's rows.
pub async fn assert_store_equals_source(fleet: &Fleet) {
    let (source, store) = digests(fleet).await;
    assert_eq!(
        source, store,
        "profile store differs from the source (count, md5)"
    );
}

/// A stored profile: (external id, first name, points, birthday).
pub type StoredProfile = (String, Option<String>, Option<String>, Option<String>);

/// Creates a MariaDB `users` table of `rows` rows keyed `id`, external ids `PREFIX-N`: rows
/// 50,001 to 55,000 share one `updated_at`, and every 97th row has no first name.
pub async fn create_mariadb_users(conn: &mut mysql_async::Conn, rows: i64, prefix: &str) {
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, external_id VARCHAR(64) NOT NULL,
            first_name VARCHAR(64), loyalty_points INT, birthday DATE,
            updated_at DATETIME(6) NOT NULL, INDEX users_watermark (updated_at, id));
         INSERT INTO users
         SELECT seq, CONCAT('{prefix}-', seq), IF(seq % 97 = 0, NULL, CONCAT('Name ', seq)),
                (seq * 7) % 1000, DATE '1970-01-01' + INTERVAL (seq % 15000) DAY,
                IF(seq BETWEEN 50001 AND 55000, TIMESTAMP '2024-03-01 12:00:00',
                   TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq * 37) * 1000 MICROSECOND)
           FROM seq_1_to_{rows}"
    ))
    .await
    .unwrap();
}

/// Every row of a MariaDB `users` table as `StoredProfile`, sorted.
pub async fn mariadb_profiles(conn: &mut mysql_async::Conn) -> Vec<StoredProfile> {
    use mysql_async::prelude::Queryable;
    let mut rows: Vec<StoredProfile> = conn
        .query::<(String, Option<String>, Option<i64>, Option<String>), _>(
            "SELECT external_id, first_name, loyalty_points, DATE_FORMAT(birthday, '%Y-%m-%d') FROM users",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|(e, f, p, b)| (e, f, p.map(|p| p.to_string()), b))
        .collect();
    rows.sort();
    rows
}

/// Every row of a PostgreSQL `public.users` table as `StoredProfile`, sorted.
pub async fn postgres_profiles(warehouse: &Client) -> Vec<StoredProfile> {
    sorted_rows(
        warehouse,
        "SELECT external_id, first_name, loyalty_points::text, to_char(birthday, 'YYYY-MM-DD')
           FROM public.users",
    )
    .await
}

/// Every profile of the store as `StoredProfile`, sorted.
pub async fn stored_profiles(fleet: &Fleet) -> Vec<StoredProfile> {
    sorted_rows(
        &fleet.control().await,
        "SELECT i.value, p.properties->>'first_name', p.properties->>'points', p.properties->>'birthday'
           FROM profile_store.profiles p
           JOIN profile_store.identities i USING (workspace_id, profile_id)
          WHERE i.kind = 'external_id'",
    )
    .await
}

/// The rows of a query of four columns as tuples, sorted.
pub async fn sorted_rows<A, B, C, D>(client: &Client, sql: &str) -> Vec<(A, B, C, D)>
where
    A: for<'a> tokio_postgres::types::FromSql<'a> + Ord,
    B: for<'a> tokio_postgres::types::FromSql<'a> + Ord,
    C: for<'a> tokio_postgres::types::FromSql<'a> + Ord,
    D: for<'a> tokio_postgres::types::FromSql<'a> + Ord,
{
    let mut rows: Vec<(A, B, C, D)> = client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    rows.sort();
    rows
}

/// Applies each spec and checks it is refused, within 15 s, with an error containing the
/// expected text (a classified connection failure).
pub fn assert_refused_within_timeout(fleet: &Fleet, cases: &[(String, &str)]) {
    for (text, expected) in cases {
        let started = std::time::Instant::now();
        let out = fleet.apply(text);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{expected} took too long"
        );
    }
}

/// The profiles of a warehouse answer selecting external id, first name, points and birthday
/// as text, as `StoredProfile`s.
pub fn profiles_of(batch: &arrow::record_batch::RecordBatch) -> Vec<StoredProfile> {
    use arrow::array::{Array, AsArray};
    let text = |i: usize| {
        arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8).unwrap()
    };
    let columns: Vec<_> = (0..4).map(text).collect();
    (0..batch.num_rows())
        .map(|r| {
            let get = |c: usize| {
                let c = columns[c].as_string::<i32>();
                c.is_valid(r).then(|| c.value(r).to_string())
            };
            (get(0).unwrap(), get(1), get(2), get(3))
        })
        .collect()
}

/// `INSERT INTO users` statements of 5,000 rows each for ids `1..=rows`, for warehouses that
/// take rows as SQL text: rows in `ties` share one updated_at (2024-03-01 12:00), the others
/// are 37 ms apart, and every 97th row has no first name. `literal(kind, text)` writes a
/// `DATE` or `TIMESTAMP` (UTC) literal in the warehouse's dialect.
pub fn user_inserts(
    rows: i64,
    ties: std::ops::RangeInclusive<i64>,
    literal: fn(&str, &str) -> String,
) -> Vec<String> {
    let epoch = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
    let birth = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    (1..=rows)
        .step_by(5_000)
        .map(|start| {
            let values: Vec<String> = (start..(start + 5_000).min(rows + 1))
                .map(|id| {
                    let updated = if ties.contains(&id) {
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
                    let birthday = (birth + chrono::Duration::days(id % 15_000)).to_string();
                    format!(
                        "({id}, 'user-{id}', {name}, {}, {}, {})",
                        id * 7 % 1000,
                        literal("DATE", &birthday),
                        literal("TIMESTAMP", &updated)
                    )
                })
                .collect();
            format!("INSERT INTO users VALUES {}", values.join(", "))
        })
        .collect()
}

/// `sluice imports preview users` shows the users import's schema and its first ten rows in
/// `(watermark, key)` order.
pub fn assert_preview_shows_first_users(fleet: &Fleet) {
    let text = preview_users(fleet, 10);
    assert!(text.contains("first_name: Utf8"), "{text}");
    assert!(text.contains("loyalty_points: Int64"), "{text}");
    assert!(
        text.contains("user-1 ") && !text.contains("user-11 "),
        "{text}"
    );
}

/// `sluice imports preview users` of workspace acme, checked to show `rows` user rows.
pub fn preview_users(fleet: &Fleet, rows: usize) -> String {
    let preview = fleet.sluice(&["imports", "preview", "users", "--workspace", "acme"]);
    let text = String::from_utf8_lossy(&preview.stdout).to_string();
    assert_eq!(
        text.lines().filter(|l| l.contains("user-")).count(),
        rows,
        "{text}"
    );
    text
}
