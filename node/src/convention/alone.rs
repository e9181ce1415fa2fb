//! A node with nobody at its convention address serves on its own, as Thespian's systems do:
//! it is its own leader (names, groups, placement among itself) while no leader has ever
//! answered it and every listed node *refuses connections* (the rule and its reasons are in
//! [`crate::tables::leadership`]). Its membership task probes the listed nodes every heartbeat
//! until a leader answers; one that starts listening ends the lone life at once, and the node
//! joins it with a full registration (its names, adopted by the leader; a clash is settled by
//! `adopt_name`).

use std::time::Duration;

use crate::runtime::core::Core;

/// How long a probe's connect may take: a loopback or LAN port that nobody listens on refuses
/// at once, so a connect still pending after this has someone (or a firewall) at the other
/// end, which is not "nobody".
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What a listed node's port said.
#[derive(Debug, PartialEq, Eq)]
enum Port {
    /// The connection was refused: nobody listens there.
    Refuses,
    /// It accepted, or did not answer in time, or failed otherwise: maybe somebody.
    MaybeSomebody,
}

async fn probe(addr: &str) -> Port {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Port::Refuses,
        _ => Port::MaybeSomebody,
    }
}

impl Core {
    /// Probes every listed node (a node that might be alone: unlisted, never answered by a
    /// leader) and starts or ends serving alone accordingly.
    pub(crate) async fn probe_listed(&self) {
        let list = self.leadership.list().to_vec();
        // All at once: one silent host must not hold the membership task up once per address.
        let ports = futures::future::join_all(list.iter().map(|a| probe(a))).await;
        for (addr, port) in list.iter().zip(ports) {
            let change = self.leadership.probed(addr, port == Port::Refuses);
            if let Some(c) = change {
                if c.to == self.addr {
                    tracing::info!(
                        convention = %self.leadership.list().join(","),
                        "nobody listens at the convention address: serving alone (names, groups and placement among this node) until a leader starts there"
                    );
                } else {
                    tracing::info!(leader = %c.to, "a listed node listens now: joining it");
                }
                self.leader_changed(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_nobody_listens_on_refuses_and_a_listening_one_is_somebody() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        // Bound and listening, never accepting: the kernel completes the connection, as for a
        // stalled node.
        assert_eq!(probe(&addr).await, Port::MaybeSomebody);
        drop(l);
        assert_eq!(probe(&addr).await, Port::Refuses);
    }
}
