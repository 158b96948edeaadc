//! A fleet spread over hosts: the coordinator, two extractors, a transformer and a loader each
//! in a network namespace of its own with a data directory of its own, and PostgreSQL,
//! RabbitMQ and an S3-compatible object store on one more, all joined by veth pairs and
//! reached only by address. Nothing may rely on a shared local disk or on localhost: the
//! store must equal the source after the run, and the chunks must have gone through S3.

mod common;

use common::broker::PrivateBroker;
use common::database::PrivatePostgres;
use common::hosts::Network;
use common::stand_in::StandIn;
use common::Fleet;

const ROWS: i64 = 30_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_spread_over_hosts_imports_exactly_the_source() {
    // Dropped last, after every process on it has stopped.
    let mut network = Network::create();
    let services = network.host("services");
    let postgres = PrivatePostgres::start_on(Some(&services));
    let broker = PrivateBroker::start_on(Some(&services));
    let bucket = format!("sluice-hosts-{}", &network.prefix.replace('.', "-"));
    let s3 = StandIn::start_on(
        Some(&services),
        "tests/warehouses/s3_stand_in.py",
        &["--bucket", &bucket],
    );
    let objects = format!(
        "s3://{bucket}/fleet?aws_access_key_id={}&aws_secret_access_key={}&aws_region=us-east-1&aws_endpoint=http://{}:{}&aws_allow_http=true",
        s3.announced["access_key_id"].as_str().unwrap(),
        url::form_urlencoded::byte_serialize(
            s3.announced["secret_access_key"].as_str().unwrap().as_bytes()
        )
        .collect::<String>(),
        services.addr,
        s3.port
    );

    let mut fleet = Fleet::on(&postgres.url(), &broker.url()).await;
    fleet.set_env("SLUICE_OBJECT_STORE_URL", &objects);
    common::create_users(&fleet.warehouse().await, ROWS).await;
    fleet.apply_ok(&common::users_spec(&fleet, 2_000));
    assert!(
        fleet.warehouse_url().contains(&services.addr),
        "the source is reached by address"
    );
    for (host, role) in [
        ("coordinator", "coordinator"),
        ("extractor1", "extractor"),
        ("extractor2", "extractor"),
        ("transformer", "transformer"),
        ("loader", "loader"),
    ] {
        let host = network.host(host);
        fleet.start_on(&host, role, &[]);
    }

    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_read"], ROWS, "{run}");
    common::assert_store_equals_source(&fleet).await;

    // The chunks crossed hosts through the object store, not a local directory: it holds
    // each chunk's objects, and no host's data directory holds any.
    let store = sluice_proto::storage::open(&objects).unwrap();
    let listed: Vec<_> =
        futures::TryStreamExt::try_collect(object_store::ObjectStore::list(store.as_ref(), None))
            .await
            .unwrap();
    assert!(
        listed
            .iter()
            .any(|o| o.location.as_ref().contains("/chunk-")),
        "no chunk objects in S3: {:?}",
        listed
            .iter()
            .map(|o| o.location.to_string())
            .collect::<Vec<_>>()
    );
    for entry in std::fs::read_dir(&fleet.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert!(
                !path.join("objects").exists(),
                "{} kept objects on its local disk",
                path.display()
            );
        }
    }
    // Both extractors took chunks.
    for host in ["extractor1", "extractor2"] {
        let log = std::fs::read_to_string(
            fleet
                .data_dir
                .join(format!("extractor@sluice-{}-{host}.log", network.tag())),
        )
        .unwrap_or_default();
        assert!(
            log.contains("chunk extracted"),
            "{host} extracted nothing:\n{log}"
        );
    }
    fleet.cleanup().await;
    drop((s3, broker, postgres));
}
