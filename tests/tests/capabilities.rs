//! Capability values and predicates as a user sees them (issue 15, Thespian §2.4, §2.5, §4.8):
//! `troupe start PORT "mem=64"`, requirements such as `mem>=32` placing an actor on the node
//! whose value fits, `chgcap` lowering a value so the actor exits and its parent re-creates it
//! where it fits, and reference §8 scenario 55 (a deep chain on one node, the `Blue` subtree
//! gone when `Blue` is removed). Real node processes on loopback ports chosen at run time.

use troupe_actor_abi::message::Address;
use troupe_tests::{
    ask, create, send_text, text_matching, wait_conv, wait_for, Convention, NodeProc, TestDir,
    CONVENTION_TIMEOUT, REPLY_TIMEOUT,
};

/// The address in a Spawner's `created ADDRESS` answer (behind any `relay: ` prefixes).
fn created(answer: &str) -> Address {
    let addr = answer.rsplit("created ").next().unwrap_or_default();
    let (node, id) = addr.rsplit_once('#').unwrap_or_else(|| panic!("not a created answer: {answer}"));
    let id = u64::from_str_radix(id, 16).unwrap_or_else(|_| panic!("bad id in {answer}"));
    Address { node: node.to_string(), id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_55_removing_blue_stops_blue_and_its_subtree_only() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "Blue,Red");
    let hash = node.load(&dir.faulty_zip());
    let mut c = node.client().await;

    // A chain of 6 on one node: Spawner → Spawner → Spawner → Spawner → Blue → Spawner. Each
    // `send ` goes one level further down; each answer comes back up as `relay: `.
    let root = create(&mut c, "faulty.Spawner", &hash).await.expect("the chain's root");
    let mut chain = vec![root.clone()];
    for (depth, ty) in ["faulty.Spawner", "faulty.Spawner", "faulty.Spawner", "faulty.Blue", "faulty.Spawner"]
        .into_iter()
        .enumerate()
    {
        let answer = ask(&mut c, &root, &format!("{}create {ty} -", "send ".repeat(depth))).await;
        assert!(
            answer.starts_with(&format!("{}created {}#", "relay: ".repeat(depth), node.addr())),
            "{answer}"
        );
        chain.push(created(&answer));
    }
    let st = node.status();
    assert_eq!(st.actors.len(), 6, "{:#?}", st.actors);
    let blue = &chain[4];
    assert_eq!(
        st.actors.iter().find(|a| a.address == *blue).map(|a| a.type_name.as_str()),
        Some("faulty.Blue")
    );

    // Removing Red touches nobody; removing Blue stops Blue and its child: 4 left.
    let out = node.run("chgcap", &["-", "Red"]);
    out.assert_ok();
    assert!(out.stdout.contains("0 actors asked to exit"), "{out}");
    let out = node.run("chgcap", &["-", "Blue"]);
    out.assert_ok();
    assert!(out.stdout.contains("1 actor asked to exit"), "{out}");
    // Blue's parent hears why, relayed up the chain.
    let t = text_matching(&mut c, REPLY_TIMEOUT, |t| t.contains("child exited")).await;
    assert!(t.starts_with("relay: relay: relay: child exited") && t.contains("no longer has [Blue]"), "{t}");
    let left = wait_for("Blue's subtree to be gone", CONVENTION_TIMEOUT, || {
        let st = node.status();
        (st.actors.len() == 4).then_some(st.actors)
    });
    let mut left: Vec<Address> = left.into_iter().map(|a| a.address).collect();
    left.sort_by_key(|a| a.id);
    assert_eq!(left, chain[..4], "the four above Blue stay");
    // The rest of the chain still answers.
    assert!(ask(&mut c, &root, "send send send create faulty.Spawner -").await.contains("created"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_requirement_places_where_it_fits_and_a_lowered_value_moves_the_actor() {
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("mem=16,gpu=A100", &[]), ("mem=64", &[])]);
    let (small, big) = (conv.node(1), conv.node(2));
    // Status shows the values, here and in the convention.
    assert_eq!(big.status().capabilities, ["mem=64"]);
    assert_eq!(small.status().capabilities, ["gpu=A100", "mem=16"]);
    let listed = conv.leader().run("status", &[]);
    assert!(listed.stdout.contains("gpu=A100, mem=16"), "{listed}");

    let hash = conv.leader().load(&dir.faulty_zip());
    let mut c = conv.leader().client().await;
    let spawner = create(&mut c, "faulty.Spawner", &hash).await.expect("Spawner");
    // faulty.Roomy requires mem>=32: not the leader (no mem), not mem=16, but mem=64.
    for _ in 0..2 {
        let answer = ask(&mut c, &spawner, "create faulty.Roomy -").await;
        assert!(answer.starts_with(&format!("created {}#", big.addr())), "{answer}");
    }
    assert_eq!(big.actor_types(), ["faulty.Roomy", "faulty.Roomy"]);
    assert_eq!(ask(&mut c, &spawner, "send hi").await, "relay: echo: hi");

    // Lowering the value below the requirement: both exit, the parent hears the requirement.
    let out = big.run("chgcap", &["+", "mem=16"]);
    out.assert_ok();
    assert!(out.stdout.contains("mem=16") && out.stdout.contains("2 actors asked to exit"), "{out}");
    let t = text_matching(&mut c, REPLY_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert!(t.contains("no longer has [mem>=32]"), "{t}");
    wait_for("the Roomy actors to exit", CONVENTION_TIMEOUT, || big.actor_types().is_empty().then_some(()));

    // Now nobody fits: the create fails naming the predicate.
    wait_conv(&conv, "the leader to see mem=16 on both members", |cv| {
        cv.leader()
            .status()
            .convention
            .members
            .iter()
            .all(|m| !m.capabilities.contains(&"mem=64".to_string()))
    });
    send_text(&mut c, &spawner, "create faulty.Roomy -").await;
    let t = text_matching(&mut c, REPLY_TIMEOUT, |t| {
        t.starts_with("child exited") && t.contains("NoCompatibleSystemForActor")
    })
    .await;
    assert!(t.contains("[mem>=32]"), "{t}");

    // Raising the other member's value: the parent re-creates it there.
    let out = small.run("chgcap", &["+", "mem=128"]);
    out.assert_ok();
    assert!(out.stdout.contains("0 actors asked to exit"), "{out}");
    wait_conv(&conv, "the leader to see mem=128", |cv| {
        cv.leader()
            .status()
            .convention
            .members
            .iter()
            .any(|m| m.capabilities.contains(&"mem=128".to_string()))
    });
    let answer = ask(&mut c, &spawner, "create faulty.Roomy -").await;
    assert!(answer.starts_with(&format!("created {}#", small.addr())), "{answer}");
    assert_eq!(ask(&mut c, &spawner, "send again").await, "relay: echo: again");
}

#[test]
fn bad_capabilities_and_requirements_are_usage_errors_that_change_nothing() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "mem=64");
    // A start with a comparison where a value belongs is refused before anything starts.
    let out = troupe_tests::troupe(&["start", &troupe_tests::free_port().to_string(), "mem>=64"], None);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("cannot contain `>`"), "{out}");
    // chgcap: a bad value, and a value given to a removal.
    let out = node.run("chgcap", &["+", "gpu="]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("value is empty"), "{out}");
    let out = node.run("chgcap", &["-", "mem=64"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("name only"), "{out}");
    assert_eq!(node.status().capabilities, ["mem=64"]);
    // A create-time requirement that does not parse.
    let hash = node.load(&dir.faulty_zip());
    let out = node.run("create", &[&hash, "faulty.Echo", "--require", "mem>=lots"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("InvalidActorSpecification") && out.stderr.contains("not a number"), "{out}");
    // A create-time requirement with a value that holds, and one that does not.
    node.run("create", &[&hash, "faulty.Echo", "--require", "mem>=64"]).assert_ok();
    let out = node.run("create", &[&hash, "faulty.Echo", "--require", "mem>64"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("NoCompatibleSystemForActor") && out.stderr.contains("mem>64"), "{out}");
}

/// Issue 21 point 8: `a=b=c` was accepted though no requirement can name the value `b=c`, and
/// a 100 KB name was accepted and echoed in full. The CLI (`chgcap`, `start`) and the node
/// (for a peer or an older CLI that sends anything) refuse both as usage errors, show only a
/// short prefix, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_no_requirement_can_name_and_over_long_ones_are_refused_in_short() {
    use troupe_node::client::ClientError;
    use troupe_node::protocol::{ErrorKind, Request};
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "mem=64");
    let huge = "n".repeat(100_000);
    let huge_value = format!("gpu={}", "v".repeat(100_000));

    for (cap, why) in
        [("a=b=c", "no requirement"), (huge.as_str(), "at most"), (huge_value.as_str(), "at most")]
    {
        let out = node.run("chgcap", &["+", cap]);
        assert_eq!(out.code, 2, "chgcap + {}: {out}", &cap[..cap.len().min(40)]);
        assert!(
            out.stderr.contains(why) && out.stderr.len() < 1_000,
            "{} bytes: {}",
            out.stderr.len(),
            &out.stderr[..out.stderr.len().min(300)]
        );
        let out = troupe_tests::troupe(&["start", &troupe_tests::free_port().to_string(), cap], None);
        assert_eq!(
            out.code,
            2,
            "start {}: {}",
            &cap[..cap.len().min(40)],
            &out.stderr[..out.stderr.len().min(300)]
        );
        assert!(out.stderr.contains(why) && out.stderr.len() < 1_000, "{} bytes", out.stderr.len());

        // The node's own check, as a peer or an older CLI meets it.
        let mut c = node.client().await;
        match c.request(Request::ChangeCapability { add: true, name: cap.to_string() }).await {
            Err(ClientError::Refused(r)) => {
                assert_eq!(r.kind, ErrorKind::BadRequest, "{r:?}");
                assert!(r.message.contains(why) && r.message.len() < 300, "{} bytes", r.message.len());
            }
            other => panic!("the node took {}: {:?}", &cap[..cap.len().min(40)], other.map(|_| "an answer")),
        }
    }
    assert_eq!(node.status().capabilities, ["mem=64"], "a refused change changes nothing");
}
