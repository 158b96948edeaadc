//! The event source the event tests and the chaos suite share: `public.activity`, its
//! import, and the check that the event store holds each of its events exactly once.

use super::Fleet;
use tokio_postgres::Client;

/// `public.activity`: `rows` events of `rows / 10` users spread over January to March 2024.
pub async fn create_activity(warehouse: &Client, rows: i64) {
    warehouse
        .batch_execute(
            "CREATE TABLE public.activity (
                id bigint PRIMARY KEY, user_id text NOT NULL, name text NOT NULL,
                occurred_at timestamptz, props jsonb, updated_at timestamptz NOT NULL);
             CREATE INDEX activity_watermark ON public.activity (updated_at, id);",
        )
        .await
        .unwrap();
    warehouse
        .execute(
            "INSERT INTO public.activity
             SELECT g, 'user-' || (g % ($1::int8 / 10)),
                    (ARRAY['App Launched', 'Viewed Item', 'app launched'])[g % 3 + 1],
                    timestamptz '2024-01-01 00:00:00+00' + (g % 90) * interval '1 day' + (g % 1000) * interval '1 second',
                    jsonb_build_object('screen', 'home-' || (g % 7), 'tags', jsonb_build_array(g % 2, g % 5)),
                    timestamptz '2024-04-01 00:00:00+00' + g * interval '1 millisecond'
               FROM generate_series(1, $1::int8) g",
            &[&rows],
        )
        .await
        .unwrap();
}

/// The import of `public.activity` as events (a YAML list item).
pub fn activity_import(chunk_rows: u64) -> String {
    format!(
        "  - name: activity
    connection: wh
    source: {{ table: public.activity }}
    data_type: events
    key: id
    watermark: updated_at
    identity: {{ external_id: user_id }}
    event_name: {{ column: name }}
    event_time: {{ column: occurred_at }}
    payload: props
    chunk_rows: {chunk_rows}
    settle_lag: 1s
"
    )
}

const SOURCE_EVENTS: &str =
    "SELECT count(*), md5(string_agg(user_id || '|' || name || '|' || occurred_at::text, E'\\n'
        ORDER BY user_id, occurred_at, name, id)) FROM public.activity";

const STORE_EVENTS: &str = "SELECT count(*), md5(string_agg(i.value || '|' || e.name || '|' || e.time::text, E'\\n'
        ORDER BY i.value, e.time, e.name, e.event_id))
   FROM profile_store.events e
   JOIN profile_store.identities i ON i.workspace_id = e.workspace_id AND i.profile_id = e.profile_id
  WHERE i.kind = 'external_id'";

/// Asserts the event store holds exactly the source's events, each once.
pub async fn assert_events_equal_source(fleet: &Fleet) {
    let (warehouse, control) = (fleet.warehouse().await, fleet.control().await);
    let mut digests = Vec::new();
    for (client, sql) in [(&warehouse, SOURCE_EVENTS), (&control, STORE_EVENTS)] {
        client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
        let row = client.query_one(sql, &[]).await.unwrap();
        digests.push((row.get::<_, i64>(0), row.get::<_, String>(1)));
    }
    assert_eq!(
        digests[0], digests[1],
        "event store differs from the source (count, md5)"
    );
    let keys = control
        .query_one(
            "SELECT count(*), count(DISTINCT dedup_key) FROM profile_store.events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        keys.get::<_, i64>(0),
        keys.get::<_, i64>(1),
        "every dedup key is stored once"
    );
}
