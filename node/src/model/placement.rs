//! Placement: where a create runs, decided from a snapshot of what the node knows (its own
//! capabilities and versions, and the convention's directory). Pure functions of their input,
//! so every rule is unit-tested without a process.
//!
//! The rules (DESIGN §5): here if this node's capabilities satisfy the type's requirements and
//! the version is active here (or is being fetched here, or can be fetched here); else a member that satisfies them and
//! holds the version or may fetch it, rotating over the eligible ones; else
//! `NoCompatibleSystemForActor`, naming the requirements and the nodes considered.

use std::collections::{BTreeMap, BTreeSet};

use troupe_actor_abi::caps::{satisfies_all, Requirement};
use troupe_actor_abi::message::CreateError;

use crate::model::config::RemoteSources;

/// The shortest hash prefix accepted (as Git's abbreviations: long enough to be unambiguous in
/// practice, short enough to type).
pub const MIN_HASH_PREFIX: usize = 8;

/// Where a create will run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Here, from the active generation `Some(gen)`, or after fetching the version (`None`: the
    /// fetch under way, or a new one).
    Local(Option<u64>),
    /// On another node.
    Remote(String),
}

/// A create, resolved and placed (or not placeable).
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) hash: String,
    /// The version's types (sent along to a remote target).
    pub(crate) types: BTreeMap<String, Vec<String>>,
    pub(crate) requirements: Vec<String>,
    pub(crate) target: Result<Target, CreateError>,
}

/// The version's state on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LocalVersion {
    /// Not here.
    Absent,
    /// Being validated (a load here, not a fetch).
    Validating,
    /// Being fetched from a peer (and maybe validated already): it will be active here, or the
    /// fetch fails and every create waiting for it with it.
    Fetching,
    /// Active, generation `.0`.
    Active(u64),
}

/// What placement knows of another member.
pub(crate) struct MemberView<'a> {
    pub(crate) addr: &'a str,
    pub(crate) capabilities: &'a [String],
    pub(crate) remote_sources: RemoteSources,
    /// It holds the version.
    pub(crate) has_source: bool,
}

/// What placement knows of this node.
#[derive(Clone)]
pub(crate) struct HereView<'a> {
    pub(crate) addr: &'a str,
    /// `name` or `name=value` entries ([`troupe_actor_abi::caps`]).
    pub(crate) capabilities: &'a [String],
    pub(crate) remote_sources: RemoteSources,
    pub(crate) leader: &'a str,
    pub(crate) version: LocalVersion,
    /// A generation of the version is draining here (unloaded: no new actors here).
    pub(crate) draining: bool,
    /// The version's declared types: from our own version, else from the directory.
    pub(crate) types: Option<BTreeMap<String, Vec<String>>>,
}

/// One create to place.
pub(crate) struct Request<'a> {
    pub(crate) hash: &'a str,
    pub(crate) type_name: &'a str,
    /// Requirements the creator adds to the type's own.
    pub(crate) extra_requirements: &'a [String],
    /// A peer placed it here: it runs here or not at all.
    pub(crate) forced_local: bool,
    /// Rotates the choice among eligible members.
    pub(crate) turn: usize,
}

/// Checks the type and places the create. `Err` for problems with the request itself (hash,
/// type); placement failures are in [`Plan::target`], so that a live named actor can still be
/// returned.
pub(crate) fn plan(
    req: &Request<'_>,
    mut here: HereView<'_>,
    members: &[MemberView<'_>],
) -> Result<Plan, CreateError> {
    let Some(types) = here.types.take() else {
        let detail = if here.draining {
            "was unloaded: its version is draining and creates no new actors"
        } else if here.version == LocalVersion::Fetching {
            "is being fetched here, and no member lists its types"
        } else if here.version != LocalVersion::Absent {
            "is still being validated"
        } else {
            "does not match any loaded source"
        };
        return Err(CreateError::InvalidActorSourceHash { hash: req.hash.into(), detail: detail.into() });
    };
    let requirements = requirements(req, &types)?;
    let target = place(req, &here, members, &requirements);
    Ok(Plan { hash: req.hash.into(), types, requirements, target })
}

/// The type's declared requirements plus the creator's.
fn requirements(
    req: &Request<'_>,
    types: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, CreateError> {
    let Some(declared) = types.get(req.type_name) else {
        let detail = if req.type_name.contains('.') {
            format!(
                "version {} exports no such type (it has: {})",
                &req.hash[..MIN_HASH_PREFIX.min(req.hash.len())],
                types.keys().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        } else {
            "an actor type is named module.Type".to_string()
        };
        return Err(CreateError::InvalidActorSpecification { type_name: req.type_name.into(), detail });
    };
    let mut requirements: Vec<String> = Vec::new();
    for r in declared.iter().chain(req.extra_requirements) {
        // Checked here, so that a bad requirement is named as such rather than as a node
        // that lacks a capability; written back in one form so that duplicates collapse.
        let parsed = Requirement::parse(r).map_err(|e| CreateError::InvalidActorSpecification {
            type_name: req.type_name.into(),
            detail: format!("bad capability requirement {e}"),
        })?;
        let r = parsed.to_string();
        if !requirements.contains(&r) {
            requirements.push(r);
        }
    }
    Ok(requirements)
}

fn place(
    req: &Request<'_>,
    here: &HereView<'_>,
    members: &[MemberView<'_>],
    requirements: &[String],
) -> Result<Target, CreateError> {
    let holders = members.iter().filter(|m| m.has_source).count();
    let leader_has = members.iter().any(|m| m.addr == here.leader && m.has_source);
    let local_active = match here.version {
        LocalVersion::Active(g) => Some(g),
        _ => None,
    };
    let can_fetch_here = match here.remote_sources {
        RemoteSources::Yes => holders > 0,
        RemoteSources::LeaderOnly => leader_has,
        RemoteSources::No => false,
    };
    let here_caps = satisfies_all(here.capabilities, requirements);
    let here_ok = here_caps
        && !here.draining
        && match here.version {
            // Being fetched is as good as here: the create waits for that one fetch.
            LocalVersion::Active(_) | LocalVersion::Fetching => true,
            LocalVersion::Absent => can_fetch_here,
            LocalVersion::Validating => false,
        };
    if here_ok {
        return Ok(Target::Local(local_active));
    }
    if req.forced_local {
        return Err(if here_caps {
            not_here(req.hash, here)
        } else {
            no_compatible(req.type_name, requirements, here, members)
        });
    }
    let is_leader = here.addr == here.leader;
    let eligible: Vec<&str> = members
        .iter()
        .filter(|m| satisfies_all(m.capabilities, requirements))
        .filter(|m| {
            m.has_source
                || match m.remote_sources {
                    RemoteSources::Yes => holders > 0 || local_active.is_some(),
                    RemoteSources::LeaderOnly => {
                        (leader_has && m.addr != here.leader) || (is_leader && local_active.is_some())
                    }
                    RemoteSources::No => false,
                }
        })
        .map(|m| m.addr)
        .collect();
    if eligible.is_empty() {
        return Err(no_compatible(req.type_name, requirements, here, members));
    }
    Ok(Target::Remote(eligible[req.turn % eligible.len()].to_string()))
}

/// A peer placed a create here, and the version cannot be had here.
fn not_here(hash: &str, here: &HereView<'_>) -> CreateError {
    let addr = here.addr;
    CreateError::InvalidActorSourceHash {
        hash: hash.into(),
        detail: match here.remote_sources {
            RemoteSources::No => {
                format!("is not loaded on {addr} and it does not fetch sources (--remote-sources no)")
            }
            RemoteSources::LeaderOnly => {
                format!(
                    "is not loaded on {addr} and the leader does not have it (--remote-sources leader-only)"
                )
            }
            RemoteSources::Yes => format!("is not active on {addr} nor on any member it knows"),
        },
    }
}

fn no_compatible(
    type_name: &str,
    requirements: &[String],
    here: &HereView<'_>,
    members: &[MemberView<'_>],
) -> CreateError {
    let mut nodes_considered = vec![here.addr.to_string()];
    nodes_considered.extend(members.iter().map(|m| m.addr.to_string()));
    CreateError::NoCompatibleSystemForActor {
        type_name: type_name.into(),
        requirements: requirements.to_vec(),
        nodes_considered,
    }
}

/// Resolves a full hash or unique prefix among `known` hashes (ours and the directory's), then
/// among `gone` ones (so that a create naming an unloaded version says so).
pub(crate) fn resolve_prefix<'a>(
    hash: &str,
    known: impl Iterator<Item = &'a String>,
    gone: impl Iterator<Item = &'a String>,
) -> Result<String, CreateError> {
    let h = hash.trim().to_ascii_lowercase();
    if h.len() < MIN_HASH_PREFIX || h.len() > 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CreateError::InvalidActorSourceHash {
            hash: hash.into(),
            detail: format!("is not a sha256 hash or a prefix of at least {MIN_HASH_PREFIX} hex digits"),
        });
    }
    if h.len() == 64 {
        return Ok(h);
    }
    let mut found: BTreeSet<&String> = known.filter(|x| x.starts_with(&h)).collect();
    if found.is_empty() {
        found = gone.filter(|x| x.starts_with(&h)).collect();
    }
    match found.len() {
        0 => Err(CreateError::InvalidActorSourceHash {
            hash: hash.into(),
            detail: "does not match any loaded source".into(),
        }),
        1 => Ok(found.into_iter().next().cloned().unwrap_or_default()),
        n => Err(CreateError::InvalidActorSourceHash {
            hash: hash.into(),
            detail: format!("is ambiguous: it is a prefix of {n} sources; give more digits"),
        }),
    }
}

#[cfg(test)]
mod tests;
