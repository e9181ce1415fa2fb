//! Who may look and who may act: the token and the checks every `/api` request passes.
//!
//! - A page on a loopback address may be looked at without a token; one on any other address
//!   (`--listen 0.0.0.0:8080`) may not, as a Jupyter server's may not.
//! - Actions are off unless `--allow-actions`; when on, each needs the token, on loopback too,
//!   and only in the `x-troupe-token` header: a page of another origin cannot set that header
//!   on a cross-site form post, so a visited site cannot act through the operator's browser.
//! - On loopback the `Host` header must name a loopback host, so that a site that rebinds its
//!   own name to 127.0.0.1 cannot read the page either.
//!
//! `troupe dashboard` prints the token at start, in the page's address (`/?token=...`); the
//! page keeps it for the tab and asks for it when it has none.

use std::net::SocketAddr;

/// The token's length in random bytes (printed as twice as many hex digits): 128 bits, as
/// Jupyter's 24 bytes, not guessable over HTTP.
const TOKEN_BYTES: usize = 24;

/// The header that carries the token (and, for reads, the `token` query parameter).
pub const TOKEN_HEADER: &str = "x-troupe-token";

/// What a request may do, decided from the page's configuration.
#[derive(Clone, Debug)]
pub struct Access {
    /// The token, when one was made (non-loopback listen, or actions on).
    token: Option<String>,
    /// Whether reads need the token (a non-loopback listen).
    reads_need_token: bool,
    /// `--allow-actions`.
    actions: bool,
    /// The page listens on loopback: the `Host` header must say so too.
    loopback: bool,
}

/// Why a request is refused: the HTTP status and the text the page shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token, or a wrong one (401).
    #[error("this dashboard needs its token: open the address troupe dashboard printed at start (…/?token=…), or enter the token")]
    Token,
    /// Actions are off (403).
    #[error("actions are off: start troupe dashboard with --allow-actions to load, deploy, upgrade, roll back, unload or change capabilities from the page")]
    ActionsOff,
    /// A `Host` header that is not a loopback name on a loopback page (403).
    #[error("this dashboard answers only to a loopback host name (127.0.0.1, localhost, [::1])")]
    Host,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Token => 401,
            Refusal::ActionsOff | Refusal::Host => 403,
        }
    }
}

impl Access {
    /// The access of a page listening on `listen`, with or without actions; makes the token
    /// when one is needed.
    pub fn new(listen: SocketAddr, actions: bool) -> Result<Access, getrandom::Error> {
        let loopback = listen.ip().is_loopback();
        let token = if !loopback || actions {
            let mut bytes = [0u8; TOKEN_BYTES];
            getrandom::fill(&mut bytes)?;
            Some(hex::encode(bytes))
        } else {
            None
        };
        Ok(Access { token, reads_need_token: !loopback, actions, loopback })
    }

    /// The token, if there is one (printed at start).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether actions are on.
    pub fn actions(&self) -> bool {
        self.actions
    }

    /// Whether reading needs the token.
    pub fn reads_need_token(&self) -> bool {
        self.reads_need_token
    }

    /// May a request with this `Host` header and this token (header or query) read?
    pub fn check_read(&self, host: Option<&str>, token: Option<&str>) -> Result<(), Refusal> {
        self.check_host(host)?;
        if self.reads_need_token && !self.token_matches(token) {
            return Err(Refusal::Token);
        }
        Ok(())
    }

    /// May a request with this `Host` header and this header token act?
    pub fn check_action(&self, host: Option<&str>, header_token: Option<&str>) -> Result<(), Refusal> {
        self.check_host(host)?;
        if !self.actions {
            return Err(Refusal::ActionsOff);
        }
        if !self.token_matches(header_token) {
            return Err(Refusal::Token);
        }
        Ok(())
    }

    /// On a loopback page, the `Host` header must name a loopback host.
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        if !self.loopback {
            return Ok(());
        }
        match host.map(host_name) {
            Some(h) if h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) => {
                Ok(())
            }
            _ => Err(Refusal::Host),
        }
    }

    /// Compares in constant time, so the answer's timing tells nothing about the token.
    fn token_matches(&self, given: Option<&str>) -> bool {
        let (Some(want), Some(given)) = (self.token.as_deref(), given) else {
            return false;
        };
        want.len() == given.len()
            && want.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// The host of a `Host` header, without its port and brackets (`[::1]:8080` → `::1`).
fn host_name(header: &str) -> &str {
    if let Some(rest) = header.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    header.rsplit_once(':').map_or(header, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str, actions: bool) -> Access {
        Access::new(addr.parse().unwrap(), actions).unwrap()
    }

    #[test]
    fn loopback_reads_freely_and_makes_a_token_only_for_actions() {
        let a = at("127.0.0.1:8080", false);
        assert!(a.token().is_none());
        assert_eq!(a.check_read(Some("127.0.0.1:8080"), None), Ok(()));
        assert_eq!(a.check_read(Some("localhost:8080"), None), Ok(()));
        assert_eq!(a.check_read(Some("[::1]:8080"), None), Ok(()));
        assert_eq!(a.check_action(Some("127.0.0.1:8080"), None), Err(Refusal::ActionsOff));
        let b = at("127.0.0.1:8080", true);
        let t = b.token().unwrap().to_string();
        assert_eq!(t.len(), 2 * TOKEN_BYTES);
        assert_eq!(b.check_action(Some("127.0.0.1:8080"), None), Err(Refusal::Token));
        assert_eq!(b.check_action(Some("127.0.0.1:8080"), Some("nope")), Err(Refusal::Token));
        assert_eq!(b.check_action(Some("127.0.0.1:8080"), Some(&t)), Ok(()));
    }

    #[test]
    fn a_rebound_host_name_is_refused_on_loopback() {
        let a = at("127.0.0.1:8080", false);
        assert_eq!(a.check_read(Some("attacker.example:8080"), None), Err(Refusal::Host));
        assert_eq!(a.check_read(None, None), Err(Refusal::Host));
    }

    #[test]
    fn elsewhere_everything_needs_the_token() {
        let a = at("0.0.0.0:8080", false);
        let t = a.token().unwrap().to_string();
        assert_eq!(a.check_read(Some("10.1.2.3:8080"), None), Err(Refusal::Token));
        assert_eq!(a.check_read(Some("10.1.2.3:8080"), Some(&t)), Ok(()));
        // Without --allow-actions even the token cannot act.
        assert_eq!(a.check_action(Some("h"), Some(&t)), Err(Refusal::ActionsOff));
        let b = at("0.0.0.0:8080", true);
        assert_ne!(a.token(), b.token(), "each start makes its own token");
    }
}
