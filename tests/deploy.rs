//! The deploy files cannot drift from the binary: every command, flag and environment
//! variable the compose file and the Kubernetes manifests use is one `sluice` has; the ports,
//! probe and scrape paths they name are the ones a running process serves; the queues KEDA
//! scales on are the ones each role consumes; and every metric name they mention is one the
//! dashboard and alert rules use (which tests/telemetry.rs checks against live exports).

mod common;

use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML file under `dir`.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The documents of a YAML file, with `<<` merge keys applied.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut value =
                Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            value.apply_merge().unwrap();
            value
        })
        .collect()
}

/// `sluice ARGS --help`.
fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "sluice {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// A process as a deploy file starts it: its arguments and environment variable names.
#[derive(Debug)]
struct Launch {
    place: String,
    args: Vec<String>,
    env: BTreeSet<String>,
}

/// Checks a launch against the binary: the subcommand exists, each flag is one of its flags,
/// and each variable is one it reads.
fn check_launch(launch: &Launch, problems: &mut Vec<String>) {
    let Some(role) = launch.args.first() else {
        problems.push(format!("{}: no subcommand", launch.place));
        return;
    };
    let top = help(&[]);
    if !top
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{role} ")))
    {
        problems.push(format!("{}: sluice has no subcommand {role}", launch.place));
        return;
    }
    let text = help(&[role]);
    for flag in launch.args.iter().filter(|a| a.starts_with("--")) {
        if !text.contains(&format!("{flag} ")) && !text.contains(&format!("{flag}=")) {
            problems.push(format!(
                "{}: sluice {role} has no flag {flag}",
                launch.place
            ));
        }
    }
    for name in &launch.env {
        let known = if name.starts_with("SLUICE_") || name.starts_with("OTEL_") {
            // `[env: NAME=]`, `[env: NAME]` for hidden values, or the help's prose.
            [
                format!("{name}="),
                format!("{name}]"),
                format!("{name} "),
                format!("{name},"),
            ]
            .iter()
            .any(|form| text.contains(form.as_str()))
        } else {
            name.starts_with("AWS_") || name.starts_with("GOOGLE_") || name.starts_with("AZURE_")
        };
        if !known {
            problems.push(format!("{}: sluice {role} reads no {name}", launch.place));
        }
    }
}

/// Checks that a role is given the databases and the master key it uses, and no others:
/// extractors and transformers no database, loaders the stores only, transformers and loaders
/// no master key.
fn check_holds_only_its_own(
    place: &str,
    role: &str,
    env: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let needs: &[&str] = match role {
        "coordinator" => &[
            "SLUICE_DATABASE_URL",
            "SLUICE_STORE_URL",
            "SLUICE_MASTER_KEY",
        ],
        "extractor" => &["SLUICE_MASTER_KEY"],
        "loader" => &["SLUICE_STORE_URL"],
        _ => &[],
    };
    for secret in [
        "SLUICE_DATABASE_URL",
        "SLUICE_STORE_URL",
        "SLUICE_MASTER_KEY",
    ] {
        match (needs.contains(&secret), env.contains(secret)) {
            (true, false) => problems.push(format!("{place}: {role} needs {secret}")),
            (false, true) => problems.push(format!("{place}: {role} is given {secret}")),
            _ => {}
        }
    }
}

/// The variables a container sets itself (`env`), each a secret key or a value. A variable
/// another one's value refers to (`$(RABBITMQ_PASSWORD)`) only composes it, and a reference
/// to a variable not set before it is a problem.
fn own_env(place: &str, container: &Value, problems: &mut Vec<String>) -> BTreeSet<String> {
    let entries: Vec<&Value> = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .collect();
    let mut set = Vec::new();
    let mut composing = BTreeSet::new();
    for entry in &entries {
        let name = entry["name"].as_str().unwrap().to_string();
        if let Some(value) = entry["value"].as_str() {
            for reference in value.split("$(").skip(1) {
                let used = reference.split(')').next().unwrap_or_default().to_string();
                if !set.contains(&used) {
                    problems.push(format!(
                        "{place}: {name} refers to {used}, not set before it"
                    ));
                }
                composing.insert(used);
            }
        }
        set.push(name);
    }
    set.into_iter().filter(|n| !composing.contains(n)).collect()
}

/// Every Secret the Deployments read, whole or by key.
fn referenced_secrets(deployments: &[&Value]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for deployment in deployments {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        for source in container["envFrom"].as_sequence().into_iter().flatten() {
            if let Some(secret) = source["secretRef"]["name"].as_str() {
                names.insert(secret.to_string());
            }
        }
        for entry in container["env"].as_sequence().into_iter().flatten() {
            if let Some(secret) = entry["valueFrom"]["secretKeyRef"]["name"].as_str() {
                names.insert(secret.to_string());
            }
        }
    }
    names
}

/// The Kubernetes objects of the base, by kind.
fn kubernetes() -> Vec<Value> {
    yaml_files(&deploy_dir().join("k8s"))
        .iter()
        .flat_map(|path| documents(path))
        .filter(|d| d.get("kind").is_some())
        .collect()
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    at.as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string in {value:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_files_use_only_what_the_binary_has_and_serves() {
    let mut problems = Vec::new();
    let objects = kubernetes();
    let of_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|o| o["kind"].as_str() == Some(kind))
            .collect()
    };
    let config = of_kind("ConfigMap")[0];
    let keys = |source: &Value| -> BTreeSet<String> {
        source
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let secrets: std::collections::BTreeMap<&str, BTreeSet<String>> = of_kind("Secret")
        .into_iter()
        .map(|s| (text(s, &["metadata", "name"]), keys(&s["stringData"])))
        .collect();
    let http_addr = text(config, &["data", "SLUICE_HTTP_ADDR"]);
    let http_port: u16 = http_addr.rsplit(':').next().unwrap().parse().unwrap();
    let prefix = text(config, &["data", "SLUICE_AMQP_PREFIX"]);

    // Every Deployment: its launch, ports and probes.
    let deployments = of_kind("Deployment");
    assert_eq!(deployments.len(), 4, "one per role");
    let mut roles = BTreeSet::new();
    for deployment in &deployments {
        let name = text(deployment, &["metadata", "name"]);
        let pod = &deployment["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        let args = strings(&container["args"]);
        roles.insert((name.to_string(), args[0].clone()));
        let mut env = keys(&config["data"]);
        for source in container["envFrom"].as_sequence().unwrap() {
            if let Some(secret) = source["secretRef"]["name"].as_str() {
                match secrets.get(secret) {
                    Some(names) => env.extend(names.iter().cloned()),
                    None => problems.push(format!("{name}: no Secret {secret}")),
                }
            }
        }
        env.extend(own_env(
            &format!("Deployment {name}"),
            container,
            &mut problems,
        ));
        let scaled_by_keda = of_kind("ScaledObject")
            .iter()
            .any(|o| o["spec"]["scaleTargetRef"]["name"].as_str() == Some(name));
        if scaled_by_keda && deployment["spec"].get("replicas").is_some() {
            problems.push(format!(
                "Deployment {name}: sets replicas under a KEDA ScaledObject (every apply resets the scale)"
            ));
        }
        check_holds_only_its_own(&format!("Deployment {name}"), &args[0], &env, &mut problems);
        check_launch(
            &Launch {
                place: format!("Deployment {name}"),
                args,
                env,
            },
            &mut problems,
        );
        let port = container["ports"][0]["containerPort"].as_u64().unwrap();
        if port != u64::from(http_port) {
            problems.push(format!(
                "{name}: container port {port}, but SLUICE_HTTP_ADDR is {http_addr}"
            ));
        }
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let served = container[probe]["httpGet"]["path"].as_str();
            if served != Some(path) {
                problems.push(format!(
                    "{name}: {probe} asks {served:?}, the process serves {path}"
                ));
            }
        }
        let annotations = &pod["metadata"]["annotations"];
        if annotations["prometheus.io/path"].as_str() != Some("/metrics")
            || annotations["prometheus.io/port"].as_str() != Some(&http_port.to_string())
        {
            problems.push(format!(
                "{name}: the scrape annotations miss /metrics on {http_port}"
            ));
        }
    }
    let coordinators = deployments
        .iter()
        .find(|d| {
            strings(&d["spec"]["template"]["spec"]["containers"][0]["args"])[0] == "coordinator"
        })
        .expect("a coordinator Deployment");
    assert_eq!(
        coordinators["spec"]["replicas"].as_u64(),
        Some(2),
        "two coordinators"
    );

    // KEDA scales each worker on the queue its role consumes.
    let scaled = of_kind("ScaledObject");
    assert_eq!(scaled.len(), 3, "one per worker role");
    for object in scaled {
        let target = text(object, &["spec", "scaleTargetRef", "name"]);
        let role = roles
            .iter()
            .find(|(name, _)| name == target)
            .map(|(_, role)| role.as_str())
            .unwrap_or_else(|| panic!("ScaledObject scales {target}, which is no Deployment"));
        let queue = text(&object["spec"]["triggers"][0], &["metadata", "queueName"]);
        let consumed = match role {
            "extractor" => "extract",
            "transformer" => "transform",
            "loader" => "load",
            other => panic!("{other} is not scaled on a queue"),
        };
        if queue != format!("{prefix}.{consumed}") {
            problems.push(format!(
                "{target}: scaled on {queue}, consumes {prefix}.{consumed}"
            ));
        }
    }
    for budget in of_kind("PodDisruptionBudget") {
        let component = text(
            budget,
            &[
                "spec",
                "selector",
                "matchLabels",
                "app.kubernetes.io/component",
            ],
        );
        if !roles.iter().any(|(_, role)| role == component) {
            problems.push(format!(
                "a PodDisruptionBudget selects {component}, which no Deployment runs"
            ));
        }
    }

    // The broker's and the database's credentials are the ones their operators generate, and
    // the database is backed up on a schedule through the Barman Cloud plugin.
    for (secret, what) in [
        ("sluice-fleet", "SLUICE_AMQP_URL"),
        ("sluice-fleet", "SLUICE_DATABASE_URL"),
    ] {
        if secrets.get(secret).is_some_and(|keys| keys.contains(what)) {
            problems.push(format!("Secret {secret} invents {what}"));
        }
    }
    for invented in ["sluice-control-plane", "sluice-stores"] {
        if secrets.contains_key(invented) {
            problems.push(format!("Secret {invented} invents database credentials"));
        }
    }
    let rabbitmq = text(of_kind("RabbitmqCluster")[0], &["metadata", "name"]);
    let postgres_cluster = of_kind("Cluster")[0];
    let postgres = text(postgres_cluster, &["metadata", "name"]);
    let referenced = referenced_secrets(&deployments);
    for generated in [
        format!("{rabbitmq}-default-user"),
        format!("{postgres}-app"),
    ] {
        if !referenced.contains(&generated) {
            problems.push(format!(
                "no Deployment reads the operator's Secret {generated}"
            ));
        }
    }
    let auth = of_kind("TriggerAuthentication")[0];
    for target in auth["spec"]["secretTargetRef"].as_sequence().unwrap() {
        if target["name"].as_str() != Some(&format!("{rabbitmq}-default-user")) {
            problems.push(format!(
                "KEDA reads the broker's credentials from {target:?}"
            ));
        }
    }
    if postgres_cluster["spec"]["backup"]["barmanObjectStore"].is_mapping() {
        problems
            .push("the PostgreSQL cluster uses the deprecated in-tree barmanObjectStore".into());
    }
    let archiver = postgres_cluster["spec"]["plugins"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|p| {
            p["name"].as_str() == Some("barman-cloud.cloudnative-pg.io")
                && p["isWALArchiver"].as_bool() == Some(true)
        });
    if !archiver {
        problems
            .push("the PostgreSQL cluster archives no WAL through the Barman Cloud plugin".into());
    }
    let nightly = of_kind("ScheduledBackup");
    if !nightly.iter().any(|b| {
        b["spec"]["cluster"]["name"].as_str() == Some(postgres)
            && b["spec"]["method"].as_str() == Some("plugin")
    }) {
        problems.push(format!(
            "no ScheduledBackup of {postgres} through the plugin"
        ));
    }
    let ingress = of_kind("Ingress");
    let service = text(of_kind("Service")[0], &["metadata", "name"]);
    if !ingress.iter().any(|i| {
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"].as_str()
            == Some(service)
    }) {
        problems.push(format!("no Ingress example routes to Service {service}"));
    }

    // The compose file's Sluice services.
    let compose = &documents(&deploy_dir().join("compose.yaml"))[0];
    let mut services = 0;
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if service["image"].as_str() != Some("sluice:local") {
            continue;
        }
        services += 1;
        let env = &service["environment"];
        let names = env
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        let args = strings(&service["command"]);
        check_holds_only_its_own(
            &format!("compose service {name}"),
            &args[0],
            &names,
            &mut problems,
        );
        check_launch(
            &Launch {
                place: format!("compose service {name}"),
                args,
                env: names,
            },
            &mut problems,
        );
        let addr = text(env, &["SLUICE_HTTP_ADDR"]);
        for published in strings(&service["ports"]) {
            if !addr.ends_with(&format!(":{}", published.rsplit(':').next().unwrap())) {
                problems.push(format!(
                    "compose {name}: publishes {published}, serves {addr}"
                ));
            }
        }
    }
    assert_eq!(services, 4, "a coordinator and three worker services");

    // Metric names mentioned anywhere are ones the dashboards use (checked against exports).
    let observed: String = ["dashboard.json", "alerts.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(deploy_dir().join("observability").join(f)).unwrap())
        .collect();
    for path in yaml_files(&deploy_dir().join("k8s"))
        .iter()
        .chain([&deploy_dir().join("compose.yaml")])
    {
        let text = std::fs::read_to_string(path).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("sluice_") && !observed.contains(word) {
                problems.push(format!(
                    "{}: metric {word} is not one Sluice exports",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // A worker really serves what the probes and scrapers ask for.
    let mut fleet = common::Fleet::new().await;
    let port = common::free_port();
    fleet.start("extractor", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let started = Instant::now();
    for path in ["/healthz", "/readyz", "/metrics"] {
        loop {
            let status = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            if status == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{path} answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    fleet.cleanup().await;
}
