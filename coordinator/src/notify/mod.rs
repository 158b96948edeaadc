//! Notifications: the webhooks, email addresses and Slack channels an import declares, each
//! hearing the events it chooses, and the delivery of the events `control.notify_event`
//! queues (run started, succeeded, partially succeeded over the target's threshold, failed;
//! import paused; alert firing and resolved), each carrying the link to its page under the
//! fleet's public address. A webhook delivery is a JSON POST signed with HMAC-SHA256 over
//! `"<timestamp>.<body>"` (`Sluice-Signature: t=<unix seconds>,v1=<hex>`), so a receiver can
//! check who sent it and refuse replays; an email goes through the fleet's SMTP server with a
//! text and an HTML part; a Slack message is posted to the channel's incoming webhook.
//! Failed deliveries are retried with backoff.

mod message;

pub use message::headline;

use crate::spec::ImportDecl;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_proto::secrets::{MasterKey, Sealed};
use std::time::Duration;
use tokio_postgres::GenericClient;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Deliveries tried per event before it is given up.
pub const MAX_ATTEMPTS: i32 = 8;

/// How long a receiver may take to answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Sluice-Signature";

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A target as stored: kind, address, sealed secret, the events it hears (all when
/// `None`) and its partial threshold.
type Target = (
    &'static str,
    String,
    Option<serde_json::Value>,
    Option<Vec<String>>,
    f64,
);

/// Makes the import's stored targets those its spec declares, each with the events it hears
/// and its partial threshold, secrets (webhook secrets, Slack URLs) sealed.
pub async fn sync_targets(
    client: &impl GenericClient,
    key: &MasterKey,
    workspace_id: i64,
    import: &ImportDecl,
) -> Result<(), tokio_postgres::Error> {
    use crate::spec::ON_CALL_EVENTS;
    let id: i64 = client
        .query_one(
            "SELECT id FROM control.imports WHERE workspace_id = $1 AND name = $2",
            &[&workspace_id, &import.name],
        )
        .await?
        .get(0);
    let notify = import.notify.clone().unwrap_or_default();
    let on_call = || Some(ON_CALL_EVENTS.iter().map(|e| e.to_string()).collect());
    let seal = |secret: &str| {
        serde_json::to_value(key.seal(secret.as_bytes())).expect("a sealed secret serializes")
    };
    let mut targets: Vec<Target> = Vec::new();
    for email in &notify.emails {
        targets.push((
            "email",
            email.address().to_string(),
            None,
            email.on().cloned().or_else(on_call),
            email
                .partial_threshold()
                .unwrap_or(notify.partial_threshold),
        ));
    }
    for hook in &notify.webhooks {
        targets.push((
            "webhook",
            hook.url.clone(),
            Some(seal(&hook.secret)),
            hook.on.clone(),
            hook.partial_threshold.unwrap_or(notify.partial_threshold),
        ));
    }
    for (i, slack) in notify.slack.iter().enumerate() {
        targets.push((
            "slack",
            format!("slack[{i}]"),
            Some(seal(&slack.url)),
            slack.on.clone().or_else(on_call),
            slack.partial_threshold.unwrap_or(notify.partial_threshold),
        ));
    }
    let mut addresses = Vec::new();
    for (kind, address, secret, events, threshold) in &targets {
        client
            .execute(
                "INSERT INTO control.notification_targets (import_id, kind, address, secret, events, partial_threshold)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (import_id, kind, address)
                 DO UPDATE SET secret = EXCLUDED.secret, events = EXCLUDED.events,
                               partial_threshold = EXCLUDED.partial_threshold",
                &[&id, kind, address, secret, events, threshold],
            )
            .await?;
        addresses.push(address.clone());
    }
    client
        .execute(
            "DELETE FROM control.notification_targets WHERE import_id = $1 AND NOT (address = ANY($2))",
            &[&id, &addresses],
        )
        .await?;
    Ok(())
}

/// One queued event with where it goes.
struct Due {
    id: Uuid,
    run_id: Option<Uuid>,
    event: String,
    attempts: i32,
    kind: String,
    address: String,
    secret: Option<serde_json::Value>,
    partial_threshold: f64,
    workspace: String,
    import: String,
    detail: serde_json::Value,
}

/// How emails leave: the fleet's SMTP server and the sender address.
#[derive(Clone)]
pub struct Mailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mailer {
    /// A mailer for `smtp://[user:password@]host[:port]` (`?tls=required` for STARTTLS) or
    /// `smtps://...`, sending as `from`.
    pub fn new(url: &str, from: &str) -> Result<Mailer, String> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SLUICE_SMTP_URL: {e}"))?
            .timeout(Some(DELIVERY_TIMEOUT))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("SLUICE_SMTP_FROM {from:?}: {e}"))?;
        Ok(Mailer { transport, from })
    }
}

const CLAIM: &str =
    "SELECT n.id, n.run_id, n.event, n.attempts, t.kind, t.address, t.secret, t.partial_threshold,
        w.name, i.name, coalesce(f.detail, '{}'::jsonb)
   FROM control.notifications n
   JOIN control.notification_targets t ON t.id = n.target_id
   JOIN control.imports i ON i.id = t.import_id
   JOIN control.workspaces w ON w.id = i.workspace_id
   LEFT JOIN control.feed f ON f.id = n.feed_id
  WHERE n.delivered_at IS NULL AND n.abandoned_at IS NULL AND n.next_attempt_at <= now()
    -- Each target hears its events in order: only its oldest pending one is sent.
    AND NOT EXISTS (SELECT 1 FROM control.notifications e
                     WHERE e.target_id = n.target_id AND e.delivered_at IS NULL
                       AND e.abandoned_at IS NULL AND (e.created_at, e.id) < (n.created_at, n.id))
  ORDER BY n.created_at, n.id
  LIMIT 20
  FOR UPDATE OF n SKIP LOCKED";

/// Delivers due events until `shutdown`: each is claimed by one coordinator (the row stays
/// locked while it is sent), marked delivered on a 2xx answer, and otherwise tried again
/// after 1, 2, 4... seconds (at most 10 minutes apart) up to `MAX_ATTEMPTS` times. A target
/// gets its events in the order they happened: a later one waits for the earlier ones.
pub async fn run(
    pool: deadpool_postgres::Pool,
    key: MasterKey,
    mailer: Option<Mailer>,
    public_url: String,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("notifications are off: {e}");
            return;
        }
    };
    loop {
        let channels = Channels {
            key: &key,
            http: &http,
            mailer: mailer.as_ref(),
            public_url: public_url.trim_end_matches('/'),
        };
        let delivered = match deliver_due(&pool, &channels).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("delivering notifications: {e}");
                0
            }
        };
        if delivered == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        } else if shutdown.is_cancelled() {
            return;
        }
    }
}

/// What deliveries go through, and the address the pages are reached at.
struct Channels<'a> {
    key: &'a MasterKey,
    http: &'a reqwest::Client,
    mailer: Option<&'a Mailer>,
    public_url: &'a str,
}

/// Sends one batch of due events; returns how many were handled.
async fn deliver_due(
    pool: &deadpool_postgres::Pool,
    channels: &Channels<'_>,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let mut pooled = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut pooled;
    let tx = client.transaction().await?;
    let due: Vec<Due> = tx
        .query(CLAIM, &[])
        .await?
        .iter()
        .map(|r| Due {
            id: r.get(0),
            run_id: r.get(1),
            event: r.get(2),
            attempts: r.get(3),
            kind: r.get(4),
            address: r.get(5),
            secret: r.get(6),
            partial_threshold: r.get(7),
            workspace: r.get(8),
            import: r.get(9),
            detail: r.get(10),
        })
        .collect();
    for n in &due {
        let outcome = deliver(&tx, channels, n).await;
        match outcome {
            Ok(Delivery::Sent) => {
                tx.execute(
                    "UPDATE control.notifications SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    &[&n.id],
                )
                .await?;
            }
            Ok(Delivery::BelowThreshold) => {
                tx.execute(
                    "UPDATE control.notifications SET delivered_at = now(), last_error = 'below the partial threshold; not sent' WHERE id = $1",
                    &[&n.id],
                )
                .await?;
            }
            Err(reason) => {
                let attempts = n.attempts + 1;
                let wait = 2f64.powi(attempts - 1).min(600.0);
                tracing::warn!(notification = %n.id, event = %n.event, kind = %n.kind, attempts, "notification delivery failed: {reason}");
                tx.execute(
                    "UPDATE control.notifications
                        SET attempts = $2, last_error = $3,
                            next_attempt_at = now() + make_interval(secs => $4),
                            abandoned_at = CASE WHEN $2 >= $5 THEN now() END
                      WHERE id = $1",
                    &[&n.id, &attempts, &reason, &wait, &MAX_ATTEMPTS],
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

enum Delivery {
    Sent,
    BelowThreshold,
}

/// Builds one event and sends it to its target.
async fn deliver(
    tx: &impl GenericClient,
    channels: &Channels<'_>,
    n: &Due,
) -> Result<Delivery, String> {
    let run = match n.run_id {
        Some(id) => Some(
            crate::runs::summary(tx, id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("run {id} is gone"))?,
        ),
        None => None,
    };
    if let (Some(run), "run.partially_succeeded") = (&run, n.event.as_str()) {
        let share = run.rows_rejected as f64 / run.rows_read.max(1) as f64;
        if share <= n.partial_threshold {
            return Ok(Delivery::BelowThreshold);
        }
    }
    let url = match &run {
        Some(run) => format!("{}/ui/runs/{}", channels.public_url, run.run_id),
        None => format!("{}/ui/imports/{}", channels.public_url, n.import),
    };
    let event = message::Event {
        id: n.id,
        kind: &n.event,
        workspace: &n.workspace,
        import: &n.import,
        run: run.as_ref(),
        detail: &n.detail,
        url,
    };
    match n.kind.as_str() {
        "email" => email(channels.mailer, &n.address, &event).await,
        "slack" => slack(channels, n, &event).await,
        _ => webhook(channels, n, &event).await,
    }
    .map(|()| Delivery::Sent)
}

/// Opens a target's sealed secret.
fn secret(channels: &Channels<'_>, n: &Due) -> Result<Vec<u8>, String> {
    let sealed: Sealed = serde_json::from_value(n.secret.clone().unwrap_or_default())
        .map_err(|e| format!("the target's sealed secret: {e}"))?;
    channels.key.open(&sealed).map_err(|e| e.to_string())
}

/// POSTs the event as JSON, signed with the webhook's secret.
async fn webhook(
    channels: &Channels<'_>,
    n: &Due,
    event: &message::Event<'_>,
) -> Result<(), String> {
    let secret = secret(channels, n)?;
    let body = serde_json::to_vec(&event.json()).map_err(|e| e.to_string())?;
    let timestamp = chrono::Utc::now().timestamp();
    let response = channels
        .http
        .post(&n.address)
        .header("Content-Type", "application/json")
        .header("Sluice-Event-Id", n.id.to_string())
        .header(SIGNATURE_HEADER, signature(&secret, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "{}: {}",
                sluice_proto::bus::redact_url(&n.address),
                e.without_url()
            )
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", response.status()))
    }
}

/// POSTs the Slack message to the channel's incoming webhook, whose URL (a secret) is never
/// logged.
async fn slack(channels: &Channels<'_>, n: &Due, event: &message::Event<'_>) -> Result<(), String> {
    let url = String::from_utf8(secret(channels, n)?)
        .map_err(|_| "the Slack URL is not text".to_string())?;
    let response = channels
        .http
        .post(&url)
        .json(&event.slack())
        .send()
        .await
        .map_err(|e| format!("Slack {}: {}", n.address, e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "Slack {} answered {}",
            n.address,
            response.status()
        ))
    }
}

/// Mails the event to its address: what happened in the subject, the figures and the page's
/// link in a text and an HTML part.
async fn email(
    mailer: Option<&Mailer>,
    address: &str,
    event: &message::Event<'_>,
) -> Result<(), String> {
    use lettre::AsyncTransport;
    let mailer =
        mailer.ok_or("SLUICE_SMTP_URL is not set on the coordinator; no email can be sent")?;
    let message = lettre::Message::builder()
        .from(mailer.from.clone())
        .to(address.parse().map_err(|e| format!("{address:?}: {e}"))?)
        .subject(event.subject())
        .multipart(lettre::message::MultiPart::alternative_plain_html(
            event.text(),
            event.html(),
        ))
        .map_err(|e| e.to_string())?;
    mailer
        .transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"secret-0123456789", 1_700_000_000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="), "{a}");
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature(b"secret-0123456789", 1_700_000_001, b"{}"));
        assert_ne!(a, signature(b"secret-0123456789", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature(b"another-secret-01", 1_700_000_000, b"{}"));
    }
}
