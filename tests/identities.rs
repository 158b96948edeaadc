//! Identity resolution through the whole fleet: email beats phone, a shared email updates the
//! most recently updated profile (and says so), `profile_id` never creates, and `update_only`
//! skips rows that match no profile.

mod common;

use common::Fleet;
use tokio_postgres::Client;

/// `public.crm`: the source of the profiles every test starts from.
async fn create_crm(warehouse: &Client) {
    warehouse
        .batch_execute(
            "CREATE TABLE public.crm (
                id bigint PRIMARY KEY, ext text, email text, phone text, name text,
                updated_at timestamptz NOT NULL);
             INSERT INTO public.crm VALUES
                (1, 'u1', 'ada@example.com', '+47 111 11 111', 'Ada', '2024-01-01'),
                (2, 'u2', 'shared@example.com', NULL, 'Bo', '2024-01-01'),
                (3, 'u3', 'shared@example.com', NULL, 'Cy', '2024-01-01'),
                (4, 'u4', NULL, '+4722222222', 'Di', '2024-01-01');
             CREATE TABLE public.contacts (
                id bigint PRIMARY KEY, email text, phone text, pid text, ext text, note text,
                updated_at timestamptz NOT NULL);",
        )
        .await
        .unwrap();
}

const CRM: &str = "  - name: crm
    connection: wh
    source: { table: public.crm }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: ext, email: email, phone: phone }
    properties:
      name: { column: name, type: string }
    settle_lag: 1s
";

/// An import of `public.contacts` with the given identity mapping and options.
fn contacts(name: &str, identity: &str, extra: &str) -> String {
    format!(
        "  - name: {name}
    connection: wh
    source: {{ table: public.contacts }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {identity}
    properties:
      note: {{ column: note, type: string }}
    settle_lag: 1s
{extra}"
    )
}

/// The profile named by an external id: (profile id, properties, email, phone).
async fn profile(
    control: &Client,
    ext: &str,
) -> (i64, serde_json::Value, Option<String>, Option<String>) {
    let row = control
        .query_one(
            "SELECT p.profile_id, p.properties, p.email, p.phone FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.kind = 'external_id' AND i.value = $1",
            &[&ext],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

async fn profile_count(control: &Client) -> i64 {
    control
        .query_one("SELECT count(*) FROM profile_store.profiles", &[])
        .await
        .unwrap()
        .get(0)
}

/// A fleet with the CRM imported; `u2` is updated after `u3`, so it is the most recent holder
/// of the shared email.
async fn fleet_with_crm(imports: &str) -> Fleet {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_crm(&warehouse).await;
    fleet.apply_ok(&fleet.spec(&format!("{CRM}{imports}")));
    fleet.start("all", &[]);
    let first = fleet.run("acme", "crm");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["profiles_created"], 4, "{first}");
    warehouse
        .batch_execute(
            "UPDATE public.crm SET name = 'Bo 2', updated_at = '2024-02-01' WHERE id = 2",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "crm");
    assert_eq!(second["profiles_updated"], 1, "{second}");
    fleet
}

#[tokio::test(flavor = "multi_thread")]
async fn email_wins_over_phone_when_a_row_has_both() {
    let fleet = fleet_with_crm(&contacts(
        "by_contact",
        "{ email: email, phone: phone }",
        "",
    ))
    .await;
    let warehouse = fleet.warehouse().await;
    // Ada's email with Di's phone: the email names the profile.
    warehouse
        .batch_execute(
            "INSERT INTO public.contacts (id, email, phone, note, updated_at) VALUES
                (1, 'ADA@example.com', '+47 222 22 222', 'via email', '2024-03-01'),
                (2, NULL, '+4722222222', 'via phone', '2024-03-01')",
        )
        .await
        .unwrap();
    let run = fleet.run("acme", "by_contact");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profiles_created"], 0, "{run}");
    assert_eq!(run["profiles_updated"], 2, "{run}");
    let control = fleet.control().await;
    let (_, ada, email, phone) = profile(&control, "u1").await;
    assert_eq!(ada["note"], "via email");
    assert_eq!(email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        phone.as_deref(),
        Some("+4722222222"),
        "the row's phone is set on the profile"
    );
    let (_, di, _, _) = profile(&control, "u4").await;
    assert_eq!(di["note"], "via phone", "a phone alone names its profile");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_email_updates_the_most_recently_updated_profile_and_is_counted_ambiguous() {
    let fleet = fleet_with_crm(&contacts("by_email", "{ email: email }", "")).await;
    fleet
        .warehouse()
        .await
        .batch_execute(
            "INSERT INTO public.contacts (id, email, note, updated_at) VALUES
                (1, 'shared@example.com', 'to the latest', '2024-03-01'),
                (2, 'ada@example.com', 'unique', '2024-03-01')",
        )
        .await
        .unwrap();
    let run = fleet.run("acme", "by_email");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["identities_ambiguous"], 1, "{run}");
    assert_eq!(run["profiles_updated"], 2, "{run}");
    let control = fleet.control().await;
    assert_eq!(profile(&control, "u2").await.1["note"], "to the latest");
    assert!(
        profile(&control, "u3").await.1.get("note").is_none(),
        "the older holder is untouched"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_id_updates_a_profile_but_never_creates_one() {
    let fleet = fleet_with_crm(&contacts("by_id", "{ profile_id: pid }", "")).await;
    let control = fleet.control().await;
    let (ada_id, _, _, _) = profile(&control, "u1").await;
    fleet
        .warehouse()
        .await
        .execute(
            "INSERT INTO public.contacts (id, pid, note, updated_at) VALUES
                (1, $1, 'by id', '2024-03-01'), (2, '999999999', 'nobody', '2024-03-01')",
            &[&ada_id.to_string()],
        )
        .await
        .unwrap();
    let before = profile_count(&control).await;
    let run = fleet.run("acme", "by_id");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profiles_updated"], 1, "{run}");
    assert_eq!(run["profiles_created"], 0, "{run}");
    assert_eq!(run["rows_skipped"], 1, "{run}");
    assert_eq!(
        profile_count(&control).await,
        before,
        "no profile was created"
    );
    assert_eq!(profile(&control, "u1").await.1["note"], "by id");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_only_skips_rows_that_match_no_profile() {
    let fleet = fleet_with_crm(&contacts(
        "refresh",
        "{ external_id: ext }",
        "    mode: update_only\n",
    ))
    .await;
    fleet
        .warehouse()
        .await
        .batch_execute(
            "INSERT INTO public.contacts (id, ext, note, updated_at) VALUES
                (1, 'u2', 'known', '2024-03-01'),
                (2, 'u-new', 'unknown', '2024-03-01'),
                (3, 'u-other', 'unknown', '2024-03-01')",
        )
        .await
        .unwrap();
    let control = fleet.control().await;
    let before = profile_count(&control).await;
    let run = fleet.run("acme", "refresh");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profiles_updated"], 1, "{run}");
    assert_eq!(run["rows_skipped"], 2, "{run}");
    assert_eq!(profile_count(&control).await, before);
    assert_eq!(profile(&control, "u2").await.1["note"], "known");
    fleet.cleanup().await;
}
