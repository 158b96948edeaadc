//! A bad spec gets an error naming its cause, and writes nothing to the control plane.

mod common;

use common::{create_users, users_spec, Fleet};

async fn control_plane_is_empty(fleet: &Fleet) {
    let control = fleet.control().await;
    for table in [
        "workspaces",
        "connections",
        "imports",
        "runs",
        "chunks",
        "watermarks",
    ] {
        let n: i64 = control
            .query_one(&format!("SELECT count(*) FROM control.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "control.{table} was written");
    }
}

fn refused(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "apply should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_specs_are_refused_with_their_cause_and_write_nothing() {
    let fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 10).await;
    assert!(fleet.sluice(&["migrate"]).status.success());
    let good = users_spec(&fleet, 1_000);

    let unknown = refused(
        &fleet.apply(&good.replace("    chunk_rows:", "    chunk_size: 5\n    chunk_rows:")),
    );
    assert!(unknown.contains("unknown field `chunk_size`"), "{unknown}");

    let missing =
        refused(&fleet.apply(&good.replace("watermark: updated_at", "watermark: changed_at")));
    assert!(
        missing.contains("imports[0].watermark") && missing.contains("changed_at"),
        "{missing}"
    );
    assert!(missing.contains("has no column"), "{missing}");

    let refusing = refused(&fleet.apply(&good.replace("127.0.0.1:5432", "127.0.0.1:1")));
    assert!(
        refusing.contains("connections[0]") && refusing.contains("unreachable"),
        "{refusing}"
    );

    let bad_type = refused(&fleet.apply(&good.replace("type: integer", "type: intger")));
    assert!(bad_type.contains("intger"), "{bad_type}");

    let bad_format = refused(&fleet.apply(&good.replace("yyyy-MM-dd", "yyyy-QQ-dd")));
    assert!(
        bad_format.contains("imports[0].properties.birthday.format"),
        "{bad_format}"
    );

    control_plane_is_empty(&fleet).await;

    let ok = fleet.apply(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("import users: created"), "{stdout}");
    fleet.cleanup().await;
}
