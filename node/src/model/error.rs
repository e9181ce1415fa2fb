//! The node core's errors: one `thiserror` enum per kind of operation, each with a stable code
//! ([`Coded`]). They are turned into wire replies once, by the admin dispatcher; the CLI turns
//! the reply's class into an exit code. README.md lists every code.

use troupe_actor_abi::message::CreateError;

use crate::store::archive::ArchiveError;
use crate::store::signing::SignatureError;
use crate::wire::error::{Coded, ErrorKind, ErrorReply};

/// Why a load (or a fetched version) was refused. The texts are what `troupe load` prints.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The zip broke a rule of the archive reader.
    #[error("rejected: {0}")]
    Archive(#[from] ArchiveError),
    /// A peer sent other bytes than the version asked for.
    #[error("rejected: the peer sent bytes whose sha256 is {got}, not the {want} that was asked for")]
    HashMismatch {
        /// The hash of what arrived.
        got: String,
        /// The hash asked for.
        want: String,
    },
    /// Packed for another plugin ABI.
    #[error("rejected: the source was packed for plugin ABI version {found}, this node speaks {ours} — rebuild it against this troupe-actor-abi")]
    AbiVersion {
        /// The manifest's ABI version.
        found: u32,
        /// The node's.
        ours: u32,
    },
    /// Packed for another message schema.
    #[error("rejected: message schema {found} (this node speaks {ours})")]
    MsgSchema {
        /// The manifest's schema.
        found: u32,
        /// The node's.
        ours: u32,
    },
    /// Built for another target triple.
    #[error("rejected: built for {found}, this node runs on {ours}")]
    Target {
        /// The manifest's target.
        found: String,
        /// The node's.
        ours: &'static str,
    },
    /// The process is running out of pthread keys.
    #[error("rejected: this node has used {keys} of its {max} pthread keys (plugins that call std::thread::current or spawn threads leak one per load) — restart the node to load more")]
    PthreadKeys {
        /// Keys in use.
        keys: u32,
        /// The process limit.
        max: u32,
    },
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopping,
    /// No source authority is registered.
    #[error("rejected: no source authority is registered on this node, so nothing can be loaded — start the node with the default accept-all authority (troupe start) or have an actor register itself")]
    NoAuthority,
    /// The ed25519 authority refused the signature.
    #[error("rejected by the ed25519 authority: {0}")]
    Signature(#[from] SignatureError),
    /// The authority actor said no.
    #[error("rejected by the source authority: {0}")]
    AuthorityRejected(String),
    /// The authority actor did not answer.
    #[error("rejected: the source authority {authority} did not answer within {secs}s")]
    AuthorityTimeout {
        /// The authority's address.
        authority: String,
        /// The timeout.
        secs: u64,
    },
    /// Unloaded while it was being validated or started.
    #[error("{hash} was unloaded while it was being {stage}")]
    Unloaded {
        /// The version.
        hash: String,
        /// `validated` or `loaded`.
        stage: &'static str,
    },
    /// The manifest and the libraries disagree.
    #[error("rejected: the manifest's actor types {declared} differ from what the libraries export {exported} — repack with troupe pack")]
    ManifestMismatch {
        /// What the manifest declares.
        declared: String,
        /// What the roots export.
        exported: String,
    },
    /// A library could not be copied.
    #[error("rejected: {0}")]
    Copy(std::io::Error),
    /// A library was refused at open or failed to initialise.
    #[error("rejected: {0}")]
    Plugin(String),
    /// A concurrent load of the same bytes failed.
    #[error("{0}")]
    Concurrent(String),
    /// A bug or a resource the node could not get.
    #[error("{0}")]
    Internal(String),
}

impl Coded for LoadError {
    fn code(&self) -> &str {
        match self {
            LoadError::Archive(e) => e.kind(),
            LoadError::HashMismatch { .. } => "hash_mismatch",
            LoadError::AbiVersion { .. } => "abi_version",
            LoadError::MsgSchema { .. } => "msg_schema",
            LoadError::Target { .. } => "target",
            LoadError::PthreadKeys { .. } => "pthread_keys",
            LoadError::Stopping => "stopping",
            LoadError::NoAuthority => "no_authority",
            LoadError::Signature(e) => e.kind(),
            LoadError::AuthorityRejected(_) => "authority_rejected",
            LoadError::AuthorityTimeout { .. } => "authority_timeout",
            LoadError::Unloaded { .. } => "unloaded",
            LoadError::ManifestMismatch { .. } => "manifest_mismatch",
            LoadError::Copy(_) => "store",
            LoadError::Plugin(_) => "plugin",
            LoadError::Concurrent(_) => "rejected",
            LoadError::Internal(_) => "internal",
        }
    }
    fn class(&self) -> ErrorKind {
        match self {
            LoadError::Stopping => ErrorKind::Unavailable,
            _ => ErrorKind::Refused,
        }
    }
}

/// Why any other request was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A create, or a hash that names no version (Thespian's names).
    #[error("{0}")]
    Create(CreateError),
    /// A load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The request itself is malformed.
    #[error("{0}")]
    Usage(String),
    /// No such group, or it has no active version.
    #[error("{0}")]
    NoGroup(String),
    /// A rollback with no earlier version loaded.
    #[error("{0}")]
    NothingToRollBack(String),
    /// The leader, which holds groups, could not be asked.
    #[error("the leader {leader} holds the groups and could not be asked: {why}")]
    LeaderUnreachable {
        /// The leader's address.
        leader: String,
        /// What went wrong.
        why: String,
    },
    /// The store could not be read.
    #[error("{0}")]
    Store(String),
    /// Another node (the leader, for groups) refused: its reply, passed on as it is.
    #[error("{}", .0.message)]
    Remote(ErrorReply),
    /// A version is being upgraded here: another upgrade, an unload or a deploy that touches
    /// it is refused until that upgrade ends.
    #[error("version {hash} is being upgraded here (upgrade {upgrade}: {from} to {to}, run by {by}); retry when it ends")]
    UpgradeInProgress {
        /// The version asked about.
        hash: String,
        /// The running upgrade's id, its versions and the node that runs it.
        upgrade: u64,
        from: String,
        to: String,
        by: String,
    },
    /// A bug.
    #[error("{0}")]
    Internal(String),
}

impl From<CreateError> for OpError {
    fn from(e: CreateError) -> OpError {
        OpError::Create(e)
    }
}

impl Coded for OpError {
    fn code(&self) -> &str {
        match self {
            OpError::Create(e) => e.code(),
            OpError::Load(e) => e.code(),
            OpError::Usage(_) => "usage",
            OpError::NoGroup(_) => "no_group",
            OpError::NothingToRollBack(_) => "nothing_to_roll_back",
            OpError::LeaderUnreachable { .. } => "leader_unreachable",
            OpError::Store(_) => "store",
            OpError::Remote(r) => &r.code,
            OpError::UpgradeInProgress { .. } => "upgrade_in_progress",
            OpError::Internal(_) => "internal",
        }
    }
    fn class(&self) -> ErrorKind {
        match self {
            OpError::Create(e) => e.class(),
            OpError::Load(e) => e.class(),
            OpError::Usage(_) => ErrorKind::BadRequest,
            OpError::Remote(r) => r.kind,
            _ => ErrorKind::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_thespian_names_stay() {
        let unknown =
            OpError::from(CreateError::InvalidActorSourceHash { hash: "ab".into(), detail: "x".into() });
        assert_eq!(unknown.code(), "InvalidActorSourceHash");
        assert_eq!(unknown.reply().message, "InvalidActorSourceHash: source hash ab x");
        assert_eq!(OpError::Usage("u".into()).class(), ErrorKind::BadRequest);
        assert_eq!(OpError::from(LoadError::Stopping).class(), ErrorKind::Unavailable);
        let errors = [
            LoadError::NoAuthority,
            LoadError::Stopping,
            LoadError::AuthorityRejected(String::new()),
            LoadError::Plugin(String::new()),
            LoadError::Copy(std::io::Error::other("x")),
        ];
        let codes: Vec<&str> = errors.iter().map(|e| e.code()).collect();
        for c in codes {
            assert!(c.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{c} is not snake_case");
        }
    }
}
