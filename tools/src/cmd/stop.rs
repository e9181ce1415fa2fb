//! `troupe stop`: asks each node to stop gracefully and waits until it has closed the
//! connection (its actors got ActorExitRequest, its versions unloaded, its files removed).

use std::time::Duration;

use troupe_node::protocol::Request;

use super::{connect, node_addr};
use crate::{report, Failure, EXIT_OK};

/// `troupe stop PORT...`: every node is asked, even after one failed; the exit code is the
/// worst of them.
pub(crate) async fn stop(ports: &[String]) -> Result<u8, Failure> {
    let mut worst = EXIT_OK;
    for port in ports {
        let addr = node_addr(port);
        let result: Result<(), Failure> = async {
            let mut c = connect(port).await?;
            c.request(Request::Stop).await?;
            // The node exits after answering: wait until it closes the connection.
            let _ = tokio::time::timeout(Duration::from_secs(10), c.next_message()).await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => println!("stopped {addr}"),
            Err(f) => {
                worst = worst.max(f.code);
                report(Err(f));
            }
        }
    }
    Ok(worst)
}
