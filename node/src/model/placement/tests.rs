//! Placement rules, each on a hand-made snapshot.

use super::*;

const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn types() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        ("morse.MorseEncoder".to_string(), vec!["morse".to_string()]),
        ("encoder.Encoder".to_string(), Vec::new()),
    ])
}

fn caps(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| s.to_string()).collect()
}

fn here<'a>(
    caps: &'a [String],
    version: LocalVersion,
    types: &'a BTreeMap<String, Vec<String>>,
) -> HereView<'a> {
    HereView {
        addr: "127.0.0.1:1900",
        capabilities: caps,
        remote_sources: RemoteSources::Yes,
        leader: "127.0.0.1:1900",
        version,
        draining: false,
        types: Some(types.clone()),
    }
}

fn req(type_name: &str) -> Request<'_> {
    Request { hash: H, type_name, extra_requirements: &[], forced_local: false, turn: 0 }
}

fn member<'a>(addr: &'a str, capabilities: &'a [String], has_source: bool) -> MemberView<'a> {
    MemberView { addr, capabilities, remote_sources: RemoteSources::Yes, has_source }
}

#[test]
fn a_type_whose_requirements_hold_here_runs_here_on_the_active_generation() {
    let (t, c) = (types(), caps(&["morse"]));
    let plan = plan(&req("morse.MorseEncoder"), here(&c, LocalVersion::Active(7), &t), &[]).unwrap();
    assert_eq!(plan.target, Ok(Target::Local(Some(7))));
    assert_eq!(plan.requirements, vec!["morse".to_string()]);
}

#[test]
fn creates_rotate_over_the_members_that_fit() {
    let (t, c) = (types(), caps(&[]));
    let morse = vec!["morse".to_string()];
    let members = [member("a:1", &morse, true), member("b:2", &[], true), member("c:3", &morse, false)];
    let mut seen = BTreeSet::new();
    for turn in 0..4 {
        let r = Request { turn, ..req("morse.MorseEncoder") };
        match plan(&r, here(&c, LocalVersion::Active(1), &t), &members).unwrap().target {
            Ok(Target::Remote(n)) => seen.insert(n),
            other => panic!("expected a remote target, got {other:?}"),
        };
    }
    // b lacks the capability; c may fetch the version (policy yes, a holder exists).
    assert_eq!(seen, BTreeSet::from(["a:1".to_string(), "c:3".to_string()]));
}

#[test]
fn no_fitting_node_names_the_requirements_and_every_node_considered() {
    let (t, c) = (types(), caps(&[]));
    let members = [member("a:1", &[], true)];
    let extra = vec!["gpu".to_string()];
    let r = Request { extra_requirements: &extra, ..req("morse.MorseEncoder") };
    let err = plan(&r, here(&c, LocalVersion::Active(1), &t), &members).unwrap().target.unwrap_err();
    let CreateError::NoCompatibleSystemForActor { requirements, nodes_considered, .. } = err else {
        panic!("wrong error {err:?}");
    };
    assert_eq!(requirements, vec!["morse".to_string(), "gpu".to_string()]);
    assert_eq!(nodes_considered, vec!["127.0.0.1:1900".to_string(), "a:1".to_string()]);
}

#[test]
fn a_draining_version_creates_nothing_here_and_says_why() {
    let (t, c) = (types(), caps(&["morse"]));
    let mut h = here(&c, LocalVersion::Absent, &t);
    (h.draining, h.types) = (true, None);
    let err = plan(&req("encoder.Encoder"), h, &[]).unwrap_err();
    assert!(err.to_string().contains("draining"), "{err}");
    assert_eq!(err.kind(), "InvalidActorSourceHash");
}

#[test]
fn a_version_still_being_validated_here_is_not_placed_here() {
    let (t, c) = (types(), caps(&[]));
    let h = here(&c, LocalVersion::Validating, &t);
    let members = [member("a:1", &[], true)];
    assert_eq!(plan(&req("encoder.Encoder"), h, &members).unwrap().target, Ok(Target::Remote("a:1".into())));
}

#[test]
fn a_version_being_fetched_here_places_every_create_that_fits_here() {
    // Issue 21: while the first create's fetch was on the wire or validating, later creates
    // went to a member that holds the version. They wait for that fetch instead.
    let (t, c) = (types(), caps(&["morse"]));
    let members = [member("a:1", &c, true)];
    for turn in 0..4 {
        let r = Request { turn, ..req("morse.MorseEncoder") };
        let h = here(&c, LocalVersion::Fetching, &t);
        assert_eq!(plan(&r, h, &members).unwrap().target, Ok(Target::Local(None)), "turn {turn}");
    }
    // Whatever the fetch policy says now: the fetch is under way already.
    let mut h = here(&c, LocalVersion::Fetching, &t);
    h.remote_sources = RemoteSources::No;
    let forced = Request { forced_local: true, ..req("morse.MorseEncoder") };
    assert_eq!(plan(&forced, h, &members).unwrap().target, Ok(Target::Local(None)));
    // A create that does not fit here still goes where it fits.
    let h = here(&c, LocalVersion::Fetching, &t);
    let extra = vec!["gpu".to_string()];
    let gpu = caps(&["morse", "gpu"]);
    let members = [member("g:2", &gpu, true)];
    let r = Request { extra_requirements: &extra, ..req("morse.MorseEncoder") };
    assert_eq!(plan(&r, h, &members).unwrap().target, Ok(Target::Remote("g:2".into())));
    // No types known yet (no member lists them): the error says the version is on its way.
    let mut h = here(&c, LocalVersion::Fetching, &t);
    h.types = None;
    let err = plan(&req("morse.MorseEncoder"), h, &[]).unwrap_err();
    assert!(err.to_string().contains("being fetched here"), "{err}");
}

#[test]
fn an_unknown_type_lists_the_types_the_version_has() {
    let (t, c) = (types(), caps(&[]));
    let err = plan(&req("morse.Nope"), here(&c, LocalVersion::Active(1), &t), &[]).unwrap_err();
    assert_eq!(err.kind(), "InvalidActorSpecification");
    assert!(err.to_string().contains("encoder.Encoder, morse.MorseEncoder"), "{err}");
    let err = plan(&req("Nope"), here(&c, LocalVersion::Active(1), &t), &[]).unwrap_err();
    assert!(err.to_string().contains("module.Type"), "{err}");
}

#[test]
fn a_create_a_peer_placed_here_runs_here_or_fails_with_the_fetch_policy() {
    let (t, c) = (types(), caps(&["morse"]));
    let mut h = here(&c, LocalVersion::Absent, &t);
    h.remote_sources = RemoteSources::No;
    let r = Request { forced_local: true, ..req("morse.MorseEncoder") };
    let err = plan(&r, h.clone(), &[member("a:1", &[], true)]).unwrap().target.unwrap_err();
    assert!(err.to_string().contains("--remote-sources no"), "{err}");
    h.remote_sources = RemoteSources::Yes;
    let ok = plan(&r, h, &[member("a:1", &[], true)]).unwrap().target;
    assert_eq!(ok, Ok(Target::Local(None)), "fetched, then created here");
}

#[test]
fn leader_only_members_are_placed_on_only_when_the_leader_holds_the_version() {
    let (t, c) = (types(), caps(&[]));
    let mut h = here(&c, LocalVersion::Absent, &t);
    h.addr = "m:2";
    h.leader = "l:1";
    let morse = vec!["morse".to_string()];
    let lo = |has_leader: bool| {
        let leader = MemberView {
            addr: "l:1",
            capabilities: &[],
            remote_sources: RemoteSources::Yes,
            has_source: has_leader,
        };
        let m = MemberView {
            addr: "x:3",
            capabilities: &morse,
            remote_sources: RemoteSources::LeaderOnly,
            has_source: false,
        };
        let other = member("y:4", &[], true);
        plan(&req("morse.MorseEncoder"), h.clone(), &[leader, m, other]).unwrap().target
    };
    assert_eq!(lo(true), Ok(Target::Remote("x:3".into())));
    assert!(lo(false).is_err());
}

#[test]
fn prefixes_resolve_uniquely_or_fail_clearly() {
    let a = H.to_string();
    let b = format!("01234567ff{}", &H[10..]);
    let known = [a.clone(), b.clone()];
    assert_eq!(resolve_prefix("0123456789", known.iter(), [].iter()).unwrap(), a);
    let err = resolve_prefix("01234567", known.iter(), [].iter()).unwrap_err();
    assert!(err.to_string().contains("ambiguous"), "{err}");
    let err = resolve_prefix("0123", known.iter(), [].iter()).unwrap_err();
    assert!(err.to_string().contains("at least 8"), "{err}");
    let gone = [b.clone()];
    assert_eq!(
        resolve_prefix("01234567ff", [].iter(), gone.iter()).unwrap(),
        b,
        "an unloaded version still resolves"
    );
    assert_eq!(
        resolve_prefix(&H.to_uppercase(), [].iter(), [].iter()).unwrap(),
        a,
        "a full hash needs no lookup"
    );
}

#[test]
fn values_place_on_the_member_whose_value_fits_and_name_the_predicate_otherwise() {
    let mut t = types();
    t.insert("ml.Trainer".into(), vec!["mem>=32".into(), "gpu=A100".into()]);
    let c = caps(&["mem=64"]); // here: enough memory, no GPU
    let small = caps(&["mem=16", "gpu=A100"]);
    let big = caps(&["mem=64", "gpu=A100"]);
    let members = [member("small:1", &small, true), member("big:2", &big, true)];
    for turn in 0..3 {
        let r = Request { turn, ..req("ml.Trainer") };
        let p = plan(&r, here(&c, LocalVersion::Active(1), &t), &members).unwrap();
        assert_eq!(p.target, Ok(Target::Remote("big:2".into())));
    }
    // A creator's extra requirement with a value, written in any spacing, joins the type's own.
    let extra = ["mem > 100".to_string()];
    let r = Request { extra_requirements: &extra, ..req("ml.Trainer") };
    let err = plan(&r, here(&c, LocalVersion::Active(1), &t), &members).unwrap().target.unwrap_err();
    assert_eq!(err.kind(), "NoCompatibleSystemForActor");
    assert!(err.to_string().contains("[mem>=32, gpu=A100, mem>100]"), "{err}");
    // A requirement that does not parse is the request's fault, named as such.
    let bad = ["mem>=lots".to_string()];
    let r = Request { extra_requirements: &bad, ..req("encoder.Encoder") };
    let err = plan(&r, here(&c, LocalVersion::Active(1), &t), &members).unwrap_err();
    assert_eq!(err.kind(), "InvalidActorSpecification");
    assert!(err.to_string().contains("not a number"), "{err}");
}
