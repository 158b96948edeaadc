//! Kept source sessions against the real PostgreSQL: a kept session plans the next run of its
//! connection only, a session the server closed is never handed out, the bounds hold, and a
//! files source (whose listing is fixed when opened) is never kept.

use sluice_connectors::Source;
use sluice_coordinator::sessions::{SessionKey, Sessions};
use sluice_proto::ConnectionKind;

const PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

async fn backend_pid(source: &Source) -> i32 {
    // The session's own backend, read through the connector's preview of a one-row query.
    let spec = sluice_connectors::source::SourceSpec {
        relation: sluice_proto::SourceRelation::Query(
            "SELECT 1::int8 AS id, now() AS at, pg_backend_pid()::text AS pid".to_string(),
        ),
        key_column: "id".to_string(),
        watermark_column: "at".to_string(),
        columns: vec!["pid".to_string()],
    };
    let shape = source.describe(&spec).await.unwrap();
    let batch = source.preview(&shape, 1).await.unwrap();
    let pid = batch
        .column(2)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    pid.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_session_serves_its_own_connection_until_the_server_closes_it() {
    let sessions = Sessions::new(4);
    let wh = SessionKey::new(1, "wh", "sealed-a");
    let source = Source::open(&ConnectionKind::POSTGRES, PG).await.unwrap();
    let pid = backend_pid(&source).await;
    sessions.keep(wh.clone(), source);
    assert_eq!(sessions.idle(), 1);

    for other in [
        SessionKey::new(2, "wh", "sealed-a"),
        SessionKey::new(1, "other", "sealed-a"),
        SessionKey::new(1, "wh", "sealed-b"),
    ] {
        assert!(
            sessions.take(&other).is_none(),
            "{other:?} is another connection or credential"
        );
    }
    let again = sessions.take(&wh).expect("the kept session");
    assert_eq!(backend_pid(&again).await, pid, "the same server session");
    assert!(sessions.take(&wh).is_none(), "a session is handed out once");

    // The server ends the session while it sits idle: it is not handed out again.
    sessions.keep(wh.clone(), again);
    let killer = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(killer.1);
    killer
        .0
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(sessions.take(&wh).is_none(), "a closed session is dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_kept_within_bounds_and_files_never() {
    let sessions = Sessions::new(4);
    let wh = SessionKey::new(1, "wh", "sealed");
    for _ in 0..6 {
        let source = Source::open(&ConnectionKind::POSTGRES, PG).await.unwrap();
        sessions.keep(wh.clone(), source);
    }
    assert_eq!(sessions.idle(), 4, "four kept per connection");

    let dir = std::env::temp_dir().join(format!("sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = Source::open(&ConnectionKind::FILES, &format!("file://{}", dir.display()))
        .await
        .unwrap();
    sessions.keep(SessionKey::new(1, "lake", "sealed"), files);
    assert_eq!(sessions.idle(), 4, "a files source is never kept");
    let _ = std::fs::remove_dir_all(&dir);
}
