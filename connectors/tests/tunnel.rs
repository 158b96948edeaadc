//! SSH tunnels against a real OpenSSH server started by the test on a loopback port (the
//! bastion), accepting only the key Sluice generated: a PostgreSQL session through the tunnel
//! works and the bastion's host key is learnt; a key the bastion does not know, a stopped
//! bastion and a changed host key each fail with their own class; a bastion restarted after
//! the tunnel closed is reached again by a new tunnel.

use sluice_connectors::postgres::PostgresSource;
use sluice_connectors::tunnel::{generate_key, Bastion, Tunnel, TunnelError};
use sluice_connectors::Connector;
use std::time::{Duration, Instant};

#[path = "../../tests/common/sshd.rs"]
mod sshd;

use sshd::Sshd;

/// The bastion a test's server is, as a tunnel names it.
fn bastion(sshd: &Sshd) -> Bastion {
    Bastion {
        host: sshd.addr.clone(),
        port: sshd.port,
        user: sshd.user(),
    }
}

/// Checks that PostgreSQL answers through the tunnel's local port.
async fn reaches_postgres(tunnel: &Tunnel) {
    let url = format!("postgres://postgres@{}/postgres", tunnel.local);
    PostgresSource::connect(&url)
        .await
        .unwrap()
        .test()
        .await
        .unwrap();
}

/// Waits until the bastion's session of `tunnel` has closed.
async fn closed(tunnel: &Tunnel) {
    let started = Instant::now();
    while tunnel.is_open() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the session stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_database_is_reached_through_the_bastion_with_the_generated_key() {
    let (private, public) = generate_key("sluice:test").unwrap();
    let mut sshd = Sshd::start(&[&public]);
    let tunnel = Tunnel::open(&bastion(&sshd), &private, None, ("127.0.0.1", 5432))
        .await
        .unwrap();
    assert_eq!(
        tunnel.host_key,
        sshd.host_key(),
        "the bastion's key is learnt"
    );
    reaches_postgres(&tunnel).await;
    // The pinned key is accepted again.
    let pinned = Tunnel::open(
        &bastion(&sshd),
        &private,
        Some(&tunnel.host_key),
        ("127.0.0.1", 5432),
    )
    .await
    .unwrap();
    drop(pinned);

    // The bastion is killed: the session closes; started again, a new tunnel reaches it.
    sshd.stop();
    closed(&tunnel).await;
    let err = Tunnel::open(&bastion(&sshd), &private, None, ("127.0.0.1", 5432))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TunnelError::Unreachable(..)), "{err}");
    sshd.restart();
    let again = Tunnel::open(&bastion(&sshd), &private, None, ("127.0.0.1", 5432))
        .await
        .unwrap();
    reaches_postgres(&again).await;
}

#[tokio::test]
async fn a_wrong_key_and_a_changed_host_key_have_their_own_classes() {
    let (_, public) = generate_key("sluice:authorized").unwrap();
    let (other, _) = generate_key("sluice:other").unwrap();
    let sshd = Sshd::start(&[&public]);
    let err = Tunnel::open(&bastion(&sshd), &other, None, ("127.0.0.1", 5432))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TunnelError::Authentication(..)), "{err}");
    assert!(err.to_string().contains("authorized_keys"), "{err}");

    let pinned = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let err = Tunnel::open(&bastion(&sshd), &other, Some(pinned), ("127.0.0.1", 5432))
        .await
        .err()
        .unwrap();
    match &err {
        TunnelError::HostKeyChanged { presented, .. } => assert_eq!(*presented, sshd.host_key()),
        other => panic!("not a changed host key: {other}"),
    }
}

#[tokio::test]
async fn a_process_shares_one_tunnel_per_database_and_reopens_a_closed_one() {
    use sluice_connectors::tunnel::Tunnels;
    let (private, public) = generate_key("sluice:shared").unwrap();
    let mut sshd = Sshd::start(&[&public]);
    let tunnels = Tunnels::default();
    let target = ("127.0.0.1", 5432);
    let first = tunnels
        .get(&bastion(&sshd), &private, None, target)
        .await
        .unwrap();
    let again = tunnels
        .get(&bastion(&sshd), &private, None, target)
        .await
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "one tunnel per database"
    );
    sshd.stop();
    closed(&first).await;
    sshd.restart();
    let reopened = tunnels
        .get(&bastion(&sshd), &private, None, target)
        .await
        .unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &reopened),
        "a closed tunnel is opened again"
    );
    reaches_postgres(&reopened).await;
    let err = sluice_connectors::SourceError::from(
        Tunnel::open(&bastion(&sshd), &generate_key("x").unwrap().0, None, target)
            .await
            .err()
            .unwrap(),
    );
    assert_eq!(err.code().as_str(), "tunnel_authentication");
    assert!(!err.retryable());
}

#[tokio::test]
async fn a_tunnel_learnt_without_a_pin_is_not_reused_under_another_pin() {
    use sluice_connectors::tunnel::Tunnels;
    let (private, public) = generate_key("sluice:pins").unwrap();
    let sshd = Sshd::start(&[&public]);
    let tunnels = Tunnels::default();
    let target = ("127.0.0.1", 5432);
    let learnt = tunnels
        .get(&bastion(&sshd), &private, None, target)
        .await
        .unwrap();
    let pinned = tunnels
        .get(&bastion(&sshd), &private, Some(&sshd.host_key()), target)
        .await
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&learnt, &pinned),
        "the pinned key is the one learnt"
    );
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let err = tunnels
        .get(&bastion(&sshd), &private, Some(other), target)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TunnelError::HostKeyChanged { .. }), "{err}");
}
