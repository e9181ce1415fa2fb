//! The version state machine, transition by transition, with no process and no library.

use super::*;

fn new(hash: &str) -> NewVersion {
    NewVersion {
        hash: hash.into(),
        package: "p 1".into(),
        info: String::new(),
        types: BTreeMap::from([("m.T".to_string(), Vec::new())]),
        files: vec!["libp.so".into()],
        name: "p".into(),
        renames: BTreeMap::new(),
    }
}

fn host() -> (HostHandle, ()) {
    (HostHandle::new(Arc::new(crate::host::pool::Pool::new(1, Default::default()))), ())
}

fn admit_new(v: &Versions, hash: &str) -> u64 {
    match v.admit(new(hash), || Ok(())).unwrap() {
        Admission::New { gen, .. } => gen,
        _ => panic!("not admitted as new"),
    }
}

fn activate(v: &Versions, gen: u64, hash: &str) {
    let types = BTreeMap::from([("m.T".to_string(), Vec::new())]);
    assert!(v.activate(gen, hash, host().0, vec!["copy".into()], Arc::default(), &types).is_ok());
}

#[tokio::test]
async fn a_second_load_of_bytes_being_validated_waits_for_the_first() {
    let v = Versions::default();
    let gen = admit_new(&v, "h");
    let Admission::Wait(rx) = v.admit(new("h"), || Ok(())).unwrap() else { panic!("no wait") };
    assert_eq!(v.local_view("h").0, LocalVersion::Validating);
    activate(&v, gen, "h");
    assert_eq!(rx.await.unwrap(), Ok(()));
    assert!(matches!(v.admit(new("h"), || Ok(())).unwrap(), Admission::AlreadyActive));
    assert_eq!(v.active("h").map(|a| a.0), Some(gen));
}

#[tokio::test]
async fn a_rejected_load_is_forgotten_and_its_waiters_told_why() {
    let v = Versions::default();
    let gen = admit_new(&v, "h");
    let Admission::Wait(rx) = v.admit(new("h"), || Ok(())).unwrap() else { panic!("no wait") };
    v.reject(gen, "bad");
    assert_eq!(rx.await.unwrap(), Err("bad".to_string()));
    assert_eq!(v.count(), 0);
    assert!(admit_new(&v, "h") > gen, "a reload gets a new generation");
}

#[test]
fn the_authority_is_asked_only_for_new_bytes() {
    let v = Versions::default();
    let refused = v.admit(new("h"), || Err::<(), _>(LoadError::NoAuthority));
    assert!(matches!(refused, Err(LoadError::NoAuthority)));
    assert_eq!(v.count(), 0, "a refused load leaves nothing behind");
}

#[tokio::test]
async fn a_draining_version_retires_once_with_its_last_actor_and_is_then_gone() {
    let v = Versions::default();
    let gen = admit_new(&v, "h");
    activate(&v, gen, "h");
    assert!(v.add_actor(gen).is_some());
    assert!(v.add_actor(gen).is_some());
    let Drain::Draining { live, gone, retire, .. } = v.drain("h") else { panic!("not draining") };
    assert_eq!((live, retire.is_some()), (2, false));
    assert_eq!(v.local_view("h"), (LocalVersion::Absent, true, None), "no new actor from it");
    assert!(v.actor_left(gen).is_none());
    assert!(v.actor_left(gen).is_some(), "the last actor retires the host");
    assert!(v.add_actor(gen).is_none(), "a retired version takes no actor");
    let (record, _) = v.gone(gen, Duration::from_millis(1));
    assert_eq!(record.map(|g| g.generation), Some(gen));
    gone.await.unwrap();
    assert!(matches!(v.drain("h"), Drain::AlreadyGone));
    assert!(matches!(v.drain("other"), Drain::Unknown));
}

#[test]
fn unloading_during_validation_abandons_the_load() {
    let v = Versions::default();
    let gen = admit_new(&v, "h");
    assert!(matches!(v.drain("h"), Drain::Cancelled));
    assert!(v.abandoned(gen));
    let types = BTreeMap::from([("m.T".to_string(), Vec::new())]);
    let refused = v.activate(gen, "h", host().0, Vec::new(), Arc::default(), &types);
    assert!(matches!(refused, Err((LoadError::Unloaded { .. }, _))), "the host comes back to be retired");
}

#[test]
fn a_manifest_that_disagrees_with_the_libraries_is_refused() {
    let v = Versions::default();
    let gen = admit_new(&v, "h");
    let other = BTreeMap::from([("m.Other".to_string(), Vec::new())]);
    let refused = v.activate(gen, "h", host().0, Vec::new(), Arc::default(), &other);
    assert!(matches!(refused, Err((LoadError::ManifestMismatch { .. }, _))));
}

#[tokio::test]
async fn a_stop_drains_everything_admits_nothing_and_ends_when_only_quarantined_ones_are_left() {
    let v = Versions::default();
    let (a, b) = (admit_new(&v, "a"), admit_new(&v, "b"));
    activate(&v, a, "a");
    activate(&v, b, "b");
    v.add_actor(b);
    let Drain::Draining { gone, .. } = v.drain("b") else { panic!() };
    let retire = v.close();
    assert_eq!(retire.len(), 1, "only the idle version retires at once");
    assert!(matches!(v.admit(new("c"), || Ok(())), Err(LoadError::Stopping)));
    assert!(!v.gone(a, Duration::ZERO).1, "b is still there");
    assert!(v.quarantine(b), "a quarantined version is as good as gone for a stop");
    gone.await.unwrap();
}

/// The live count of `hash`'s generation, as status shows it.
fn live(v: &Versions, gen: u64) -> usize {
    v.status(Duration::from_secs(60)).0.iter().find(|s| s.generation == gen).map_or(0, |s| s.live_actors)
}

#[test]
fn a_move_carries_one_count_and_retires_a_draining_version_with_its_last_actor() {
    let v = Versions::default();
    let (g1, g2) = (admit_new(&v, "v1"), admit_new(&v, "v2"));
    activate(&v, g1, "v1");
    activate(&v, g2, "v2");
    v.add_actor(g1);
    v.add_actor(g1);
    assert!(matches!(v.drain("v1"), Drain::Draining { live: 2, retire: None, .. }));
    assert!(v.actor_moved(g1, g2).is_none(), "one actor left on v1");
    assert_eq!((live(&v, g1), live(&v, g2)), (1, 1));
    assert!(v.actor_moved(g1, g1).is_none(), "a move to where it is changes nothing");
    assert_eq!(live(&v, g1), 1);
    assert!(v.actor_moved(g1, g2).is_some(), "the last actor's move retires v1");
    assert!(v.actor_moved(g1, g2).is_none(), "its host is handed out once");
    assert_eq!(live(&v, g2), 3, "counted wherever the actor table says it went");
    assert_eq!(live(&v, g1), 0);
}
