//! A client of a node's admin port: what the CLI and the tests use.
//!
//! [`Client::connect`] says hello and learns the connection's own address; [`Client::request`]
//! sends one request and waits for its reply, keeping messages that arrive for the client
//! meanwhile; [`Client::next_message`] returns those messages in order.

use std::collections::VecDeque;
use std::time::Duration;

use crate::wire::SealedCodec;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use troupe_actor_abi::message::{Address, Incoming};

use crate::wire::{self as protocol, ClientFrame, ErrorReply, Request, Response, ServerFrame};

/// The shared secret named by `TROUPE_SECRET_FILE`, if set (the CLI's `--secret-file` sets it).
pub fn secret_from_env() -> Result<Option<crate::store::signing::Secret>, String> {
    match std::env::var_os("TROUPE_SECRET_FILE") {
        Some(p) if !p.is_empty() => {
            crate::store::signing::Secret::load(std::path::Path::new(&p)).map(Some).map_err(|e| e.to_string())
        }
        _ => Ok(None),
    }
}

/// How long connecting and the hello may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at that address.
    #[error("no node is listening on {addr}: {source}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The node broke the protocol or closed the connection.
    #[error("protocol error talking to {addr}: {message}")]
    Protocol {
        /// The node.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The node refused the request.
    #[error(transparent)]
    Refused(#[from] ErrorReply),
    /// No answer in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
}

/// A connection to one node.
pub struct Client {
    framed: Framed<TcpStream, SealedCodec>,
    addr: String,
    me: Address,
    node: String,
    next_id: u64,
    inbox: VecDeque<Incoming>,
    /// While waiting for the node, a [`ClientFrame::Keepalive`] this often (a third of the
    /// node's idle timeout), so that a long wait is not taken for an idle connection.
    keepalive: Option<Duration>,
}

impl Client {
    /// Connects to `addr` (`host:port`) and says hello, with the secret `TROUPE_SECRET_FILE`
    /// names (if set).
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        let secret =
            secret_from_env().map_err(|m| ClientError::Protocol { addr: addr.into(), message: m })?;
        Client::connect_with(addr, secret.as_ref()).await
    }

    /// As [`Client::connect`], with `secret` (an encrypted link) or none, whatever the
    /// environment says.
    pub async fn connect_with(
        addr: &str,
        secret: Option<&crate::store::signing::Secret>,
    ) -> Result<Client, ClientError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ClientError::Unreachable { addr: addr.into(), source }),
            Err(_) => {
                return Err(ClientError::Unreachable {
                    addr: addr.into(),
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, SealedCodec::new(protocol::codec()));
        let agent = format!("troupe {}", env!("CARGO_PKG_VERSION"));
        let welcome =
            tokio::time::timeout(CONNECT_TIMEOUT, protocol::client_handshake(&mut framed, &agent, secret))
                .await
                .map_err(|_| ClientError::Timeout {
                    what: format!("handshake with {addr}"),
                    after: CONNECT_TIMEOUT,
                })?
                .map_err(|m| ClientError::Protocol { addr: addr.into(), message: m })?;
        Ok(Client {
            framed,
            addr: addr.into(),
            me: welcome.client,
            node: welcome.node,
            next_id: 1,
            inbox: VecDeque::new(),
            keepalive: welcome.idle_timeout.map(|t| t / 3),
        })
    }

    /// This connection's own address (messages to it arrive via [`Client::next_message`]).
    pub fn address(&self) -> &Address {
        &self.me
    }

    /// The node's admin address as it names itself.
    pub fn node(&self) -> &str {
        &self.node
    }

    async fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        let proto = |m: String| ClientError::Protocol { addr: self.addr.clone(), message: m };
        let next = loop {
            let Some(every) = self.keepalive else { break self.framed.next().await };
            // Reading a frame is cancel-safe: what arrived stays in the codec's buffer.
            match tokio::time::timeout(every, self.framed.next()).await {
                Ok(next) => break next,
                Err(_) => {
                    let frame = protocol::encode(&ClientFrame::Keepalive);
                    self.framed.send(frame).await.map_err(|e| proto(e.to_string()))?;
                }
            }
        };
        match next {
            Some(Ok(b)) => protocol::decode::<ServerFrame>(&b).map_err(|e| proto(e.to_string())),
            Some(Err(e)) => Err(proto(e.to_string())),
            None => Err(proto("the node closed the connection".into())),
        }
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = ClientFrame::Request { id, request };
        self.framed
            .send(protocol::encode(&frame))
            .await
            .map_err(|e| ClientError::Protocol { addr: self.addr.clone(), message: e.to_string() })?;
        loop {
            match self.read_frame().await? {
                ServerFrame::Reply { id: rid, result } if rid == id => {
                    return result.map_err(ClientError::Refused)
                }
                ServerFrame::Deliver(m) => self.inbox.push_back(m),
                ServerFrame::ProtocolError { message } => {
                    return Err(ClientError::Protocol { addr: self.addr.clone(), message })
                }
                _ => {}
            }
        }
    }

    /// The next message sent to this client.
    pub async fn next_message(&mut self) -> Result<Incoming, ClientError> {
        if let Some(m) = self.inbox.pop_front() {
            return Ok(m);
        }
        loop {
            match self.read_frame().await? {
                ServerFrame::Deliver(m) => return Ok(m),
                ServerFrame::ProtocolError { message } => {
                    return Err(ClientError::Protocol { addr: self.addr.clone(), message })
                }
                _ => {}
            }
        }
    }
}
