//! The first hour of a new user, through the CLI only: a dry run that refuses to promote a
//! draft whose date format swaps day and month (and names the pattern that reads the data),
//! runs listed, shown, followed and cancelled, a saved workspace context, errors that name the
//! field and list what there is, JSON on every list, quiet output into pipes and files, shell
//! completions, a version with its commit, and `sluice demo` in a terminal.

mod common;

use common::Fleet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `public.signups`: `rows` profiles whose `signed` dates are written `dd/MM/yyyy`, the first
/// rows (by watermark) with a day above 12, so a preview shows them too.
async fn create_signups(fleet: &Fleet, rows: i64) {
    fleet
        .warehouse()
        .await
        .batch_execute(&format!(
            "CREATE TABLE public.signups AS
             SELECT g AS id, 'user-' || g AS external_id, 'pro' AS plan,
                    to_char(date '2024-01-13' + (g % 360)::int, 'DD/MM/YYYY') AS signed,
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS updated_at
               FROM generate_series(1, {rows}) AS g"
        ))
        .await
        .unwrap();
}

fn signups_spec(fleet: &Fleet, format: &str) -> String {
    fleet.spec(&format!(
        r#"  - name: signups
    connection: wh
    source: {{ table: public.signups }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    properties:
      plan: {{ column: plan, type: string }}
      signed_up: {{ column: signed, type: date, format: "{format}" }}
    chunk_rows: 2000
    settle_lag: 1s
"#
    ))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A person's command: the CLI's own log level, not the tests' INFO.
fn as_person(fleet: &Fleet, args: &[&str]) -> Command {
    let mut command = fleet.command(args);
    command.env_remove("SLUICE_LOG");
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_with_day_and_month_swapped_keeps_the_draft_and_names_the_pattern() {
    let mut fleet = Fleet::new().await;
    create_signups(&fleet, 5000).await;
    let drafted = fleet.apply_with(&signups_spec(&fleet, "MM/dd/yyyy"), &[]);
    assert!(drafted.status.success(), "{}", stderr(&drafted));
    // The preview makes the same check on the rows it shows.
    let preview = fleet.sluice(&[
        "imports",
        "preview",
        "signups",
        "--workspace",
        "acme",
        "--rows",
        "20",
    ]);
    assert!(
        stdout(&preview).contains("do not fit MM/dd/yyyy; all 20 read as dd/MM/yyyy"),
        "{}{}",
        stdout(&preview),
        stderr(&preview)
    );
    fleet.start("all", &[]);

    let dry = fleet.sluice(&[
        "run",
        "signups",
        "--workspace",
        "acme",
        "--dry-run",
        "--wait",
        "--output",
        "json",
    ]);
    assert_eq!(dry.status.code(), Some(1), "a refused promotion exits 1");
    let run: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(run["dry_run"], true, "{run}");
    assert_eq!(run["promoted"], false, "{run}");
    assert!(
        run["promotion"].as_str().unwrap().contains("stays a draft"),
        "{run}"
    );
    let hint = &run["format_hints"][0];
    assert_eq!(hint["property"], "signed_up", "{run}");
    assert_eq!(hint["declared"], "MM/dd/yyyy", "{run}");
    assert_eq!(hint["reads_all"], "dd/MM/yyyy", "{run}");
    assert_eq!(hint["values"], 5000, "{run}");
    // The sample's properties are an object, its lists lists.
    let sample = &run["sample"][0];
    assert!(sample["properties"].is_object(), "{sample}");
    assert_eq!(
        sample["stale_properties"],
        serde_json::json!([]),
        "{sample}"
    );
    assert_eq!(fleet.import_view("signups")["state"], "draft");

    // For people, into a file: labelled a dry run, the advice, no colour, no INFO lines.
    let text = as_person(
        &fleet,
        &[
            "run",
            "signups",
            "--workspace",
            "acme",
            "--dry-run",
            "--wait",
        ],
    )
    .output()
    .unwrap();
    let all = format!("{}{}", stdout(&text), stderr(&text));
    assert!(
        all.contains("dry run ") && all.contains("nothing was written"),
        "{all}"
    );
    assert!(all.contains("all 5,000 read as dd/MM/yyyy"), "{all}");
    assert!(all.contains("stays a draft"), "{all}");
    assert!(!all.contains('\u{1b}'), "ANSI escapes in a file: {all:?}");
    assert!(!all.contains("INFO"), "INFO lines for a person: {all}");

    // A closed pipe ends the command quietly.
    let run_id = run["run_id"].as_str().unwrap();
    for command in [
        format!(
            "'{}' runs errors {run_id} --csv | head -1",
            env!("CARGO_BIN_EXE_sluice")
        ),
        format!(
            "'{}' runs errors {run_id} --limit 1000 | head -1",
            env!("CARGO_BIN_EXE_sluice")
        ),
    ] {
        let piped = fleet
            .command(&[])
            .env_remove("SLUICE_LOG")
            .output_of_shell(&command);
        assert!(piped.status.success(), "{command}: {}", stderr(&piped));
        assert_eq!(stderr(&piped), "", "{command}");
        assert_eq!(stdout(&piped).lines().count(), 1, "{command}");
    }

    // With the format the data has, the dry run promotes the draft.
    fleet.apply_with(&signups_spec(&fleet, "dd/MM/yyyy"), &[]);
    let fixed = fleet.run_with("acme", "signups", &["--dry-run"]);
    assert_eq!(fixed["promoted"], true, "{fixed}");
    assert_eq!(fixed["format_hints"], serde_json::json!([]), "{fixed}");
    assert_eq!(fleet.import_view("signups")["state"], "ready");
    fleet.cleanup().await;
}

/// Runs a shell command line with a prepared command's environment.
trait ShellLine {
    fn output_of_shell(&mut self, line: &str) -> std::process::Output;
}

impl ShellLine for Command {
    fn output_of_shell(&mut self, line: &str) -> std::process::Output {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(line);
        for (key, value) in self.get_envs() {
            match value {
                Some(v) => shell.env(key, v),
                None => shell.env_remove(key),
            };
        }
        shell.output().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_listed_shown_watched_and_cancelled_from_the_cli() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 3000).await;
    fleet.apply_ok(&common::users_spec(&fleet, 500));
    // A coordinator alone plans the run; with no extractor it stays running.
    fleet.start("coordinator", &[]);
    let requested = fleet.sluice(&["run", "users", "--workspace", "acme"]);
    assert!(requested.status.success(), "{}", stderr(&requested));
    let said = stdout(&requested);
    assert!(said.contains("sluice runs watch "), "{said}");
    let run_id = said
        .split_whitespace()
        .nth(1)
        .expect("the run's id")
        .to_string();

    let control = fleet.control().await;
    let start = Instant::now();
    while fleet.run_status(&run_id).await != "running" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run was not planned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ctrl-C while watching cancels the run (without asking, as a script does).
    let watcher = as_person(
        &fleet,
        &[
            "runs",
            "watch",
            &run_id,
            "--workspace",
            "acme",
            "--cancel-on-interrupt",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let signal = Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let watched = watcher.wait_with_output().unwrap();
    assert_eq!(watched.status.code(), Some(1), "{}", stderr(&watched));
    assert!(
        stdout(&watched).contains("cancelled"),
        "{}",
        stdout(&watched)
    );
    assert_eq!(fleet.run_status(&run_id).await, "cancelled");

    // The retry is a run, not `skipped`.
    let retry = fleet.request_run("acme", "users");
    // The coordinator records a requested run when it takes the request off the queue.
    let start = Instant::now();
    while fleet.run_status(&retry).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the retry was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = fleet.sluice(&["runs", "list", "--workspace", "acme", "--output", "json"]);
    let page: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{page}");
    assert_eq!(runs[0]["run_id"], retry.as_str(), "newest first: {page}");
    assert_eq!(runs[1]["status"], "cancelled", "{page}");
    let cancelled = fleet.sluice(&[
        "runs",
        "list",
        "--workspace",
        "acme",
        "--status",
        "cancelled",
        "--output",
        "json",
    ]);
    let page: serde_json::Value = serde_json::from_slice(&cancelled.stdout).unwrap();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1, "{page}");
    let table = stdout(&fleet.sluice(&["runs", "list", "--workspace", "acme"]));
    assert!(table.starts_with("RUN "), "a header: {table}");

    // `runs watch` follows the retry to its end once workers come up.
    fleet.start("extractor", &[]);
    fleet.start("transformer", &[]);
    fleet.start("loader", &[]);
    let followed = fleet.sluice(&["runs", "watch", &retry, "--output", "json"]);
    assert!(followed.status.success(), "{}", stderr(&followed));
    let summary: serde_json::Value = serde_json::from_slice(&followed.stdout).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_read"], 3000, "{summary}");
    let shown = fleet.sluice(&["runs", "show", &retry]);
    assert!(
        stdout(&shown).contains(&format!("run {retry} of acme/users: succeeded")),
        "{}",
        stdout(&shown)
    );
    let view = fleet.import_view("users");
    assert!(view["watermark"].as_str().is_some(), "{view}");
    assert_eq!(view["last_run"]["rows_read"], 3000, "{view}");
    let show = stdout(&fleet.sluice(&["imports", "show", "users", "--workspace", "acme"]));
    for needle in [
        "watermark (",
        "3000 rows read",
        "property points <- loyalty_points as integer",
    ] {
        assert!(show.contains(needle), "{needle} in {show}");
    }
    drop(control);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workspace_comes_from_the_flag_the_spec_or_the_saved_context_never_a_default() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 100).await;
    fleet.apply_ok(&common::users_spec(&fleet, 100));

    let none = fleet.sluice(&["imports", "list"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("sluice config set workspace"),
        "{}",
        stderr(&none)
    );
    let saved = fleet.sluice(&["config", "set", "workspace", "acme"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(fleet.data_dir.join("config.yaml").exists());
    let listed = fleet.sluice(&["imports", "list"]);
    assert!(stdout(&listed).contains("users"), "{}", stderr(&listed));
    let other = fleet.sluice(&["imports", "list", "--workspace", "elsewhere"]);
    assert!(
        stderr(&other).contains("no workspace \"elsewhere\""),
        "--workspace wins: {}",
        stderr(&other)
    );
    let from_env =
        fleet.sluice_with_env(&["imports", "list"], &[("SLUICE_WORKSPACE", "elsewhere")]);
    assert!(
        !from_env.status.success(),
        "SLUICE_WORKSPACE wins over the file"
    );
    let typo = fleet.sluice(&["config", "set", "workspce", "acme"]);
    assert!(
        stderr(&typo).contains("did you mean `workspace`"),
        "{}",
        stderr(&typo)
    );

    // `run -f` acts in the spec's workspace whatever the saved one is.
    fleet.sluice(&["config", "set", "workspace", "elsewhere"]);
    let spec = fleet.data_dir.join("spec.yaml");
    fleet.start("all", &[]);
    let run = fleet.sluice(&[
        "run",
        "-f",
        spec.to_str().unwrap(),
        "users",
        "--wait",
        "--output",
        "json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["workspace"], "acme", "{summary}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_field_list_the_columns_and_suggest_the_key() {
    let fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 10).await;
    let good = common::users_spec(&fleet, 100);
    let typo = fleet.apply(&good.replace("column: first_name", "column: frist_name"));
    let said = stderr(&typo);
    assert!(!typo.status.success());
    assert!(
        said.contains("imports[0].properties.first_name.column"),
        "the field path: {said}"
    );
    assert!(
        said.contains("has no column \"frist_name\"; its columns, closest first: first_name,"),
        "the columns, closest first: {said}"
    );
    let key = fleet.apply(&good.replace("chunk_rows:", "chunk_row:"));
    assert!(
        stderr(&key).contains("did you mean `chunk_rows`?"),
        "{}",
        stderr(&key)
    );
    // An unreachable host is named with its port and the OS's reason.
    let unreachable = fleet.apply(&good.replace("127.0.0.1:5432", "127.0.0.1:1"));
    let said = stderr(&unreachable);
    assert!(
        said.contains("connections[0]: connection wh: source unreachable: 127.0.0.1:1: ")
            && said.contains("os error"),
        "{said}"
    );
    let mysql = fleet.apply(
        "workspace: acme\nconnections:\n  - name: my\n    kind: mysql\n    url: mysql://root@127.0.0.1:1/x\n",
    );
    let said = stderr(&mysql);
    assert!(
        said.contains("connection my: source unreachable: 127.0.0.1:1: ")
            && said.contains("os error"),
        "{said}"
    );
    // Nothing was written.
    assert!(!fleet
        .sluice(&["imports", "list", "--workspace", "acme"])
        .status
        .success());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_list_and_show_command_prints_json_on_request() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 200).await;
    fleet.apply_ok(&common::users_spec(&fleet, 100));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    let run_id = run["run_id"].as_str().unwrap();
    for (args, list) in [
        (vec!["imports", "list"], true),
        (vec!["imports", "show", "users"], false),
        (vec!["imports", "preview", "users"], false),
        (vec!["connections", "list"], true),
        (vec!["connections", "test", "wh"], false),
        (vec!["runs", "list"], false),
        (vec!["runs", "show", run_id], false),
        (vec!["runs", "errors", run_id], true),
        (vec!["workspaces", "list"], true),
        (vec!["config", "show"], false),
    ] {
        let mut full = args.clone();
        full.extend(["--workspace", "acme", "--output", "json"]);
        let out = fleet.sluice(&full);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let value: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)));
        assert_eq!(value.is_array(), list, "{args:?}: {value}");
    }
    let table = stdout(&fleet.sluice(&["imports", "list", "--workspace", "acme"]));
    assert!(table.starts_with("NAME "), "{table}");
    fleet.cleanup().await;
}

#[test]
fn completions_and_the_version_with_its_commit() {
    let sluice = env!("CARGO_BIN_EXE_sluice");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(sluice)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains("imports") && script.contains("runs"),
            "{shell}"
        );
    }
    let version = stdout(&Command::new(sluice).arg("--version").output().unwrap());
    assert!(version.starts_with("sluice "), "{version}");
    let commit = version
        .split("commit ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{version}"
    );
    assert!(version.contains(", built 20"), "{version}");
}

/// `sluice demo` in a real terminal (tmux): the progress bar while it runs, then the summary,
/// on at most 25 lines, the fleet's logs in the file it names.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_in_a_terminal_shows_a_progress_bar_and_a_short_summary() {
    let fleet = Fleet::new().await;
    let session = format!("sluice-{}", fleet.id);
    let mut line = String::from("env");
    for (key, value) in fleet.command(&[]).get_envs() {
        if let Some(value) = value {
            let (key, value) = (key.to_string_lossy(), value.to_string_lossy());
            if key != "SLUICE_LOG" {
                line.push_str(&format!(" '{key}={value}'"));
            }
        }
    }
    line.push_str(&format!(
        " '{}' demo; echo DEMO-EXIT=$?; sleep 600",
        env!("CARGO_BIN_EXE_sluice")
    ));
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "60",
            &line,
        ])
        .status()
        .expect("tmux runs (deploy/services.sh installs it)");
    assert!(started.success());
    let capture = || {
        stdout(
            &Command::new("tmux")
                .args(["capture-pane", "-p", "-t", &session])
                .output()
                .unwrap(),
        )
    };
    let start = Instant::now();
    let (mut saw_bar, mut screen) = (false, String::new());
    while !screen.contains("DEMO-EXIT=") {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the demo did not end: {screen}"
        );
        screen = capture();
        saw_bar |= screen.contains(" chunks ") || screen.contains("waiting for a coordinator");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert!(screen.contains("DEMO-EXIT=0"), "{screen}");
    assert!(saw_bar, "no progress bar was drawn");
    assert!(
        screen.contains("run ") && screen.contains("of demo/users: "),
        "{screen}"
    );
    let lines: Vec<&str> = screen
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("DEMO-EXIT="))
        .collect();
    assert!(lines.len() <= 25, "{} lines: {screen}", lines.len());
    assert!(!screen.contains("INFO"), "{screen}");
    let log = std::fs::read_to_string(fleet.data_dir.join("demo.log")).unwrap();
    assert!(log.contains("INFO"), "the fleet's logs are in the file");
    assert!(!log.contains('\u{1b}'), "no colours in the log file");
    fleet.cleanup().await;
}
