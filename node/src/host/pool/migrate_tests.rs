//! The run queue's side of a live upgrade, with no plugin: pausing an actor, handing over
//! what waited, forwarding what arrives late, and resuming after a failed move.

use std::sync::Arc;

use troupe_actor_abi::message::{Incoming, Payload};

use super::*;
use crate::host::effect::HostHandle;
use crate::host::migrate::Move;

fn to(id: u64, s: &str) -> Cmd {
    Cmd::Deliver { id, msg: Delivery::Msg(Incoming { sender: None, payload: Payload::Text(s.into()) }) }
}

fn text_of(w: &Work) -> String {
    match w {
        Work::Deliver(Delivery::Msg(Incoming { payload: Payload::Text(t), .. })) => t.clone(),
        Work::Export(_) => "<export>".into(),
        Work::Import(_) => "<import>".into(),
        Work::DropMoved { counted } => format!("<drop {counted}>"),
        Work::Create(_) => "<create>".into(),
        Work::Deliver(_) => "<raw>".into(),
    }
}

fn texts(turn: &Turn) -> Vec<String> {
    turn.work.iter().map(text_of).collect()
}

fn actor() -> Option<ActorState> {
    Some(ActorState { plugin: 0, kind: 0, state: std::ptr::null_mut() })
}

fn a_move(from: &Arc<Pool>, to: &Arc<Pool>) -> Box<Move> {
    let (report, _) = tokio::sync::mpsc::unbounded_channel();
    Box::new(Move {
        id: 0,
        from_type: "m.T".into(),
        to_type: "m.T".into(),
        package: "p".into(),
        from: HostHandle::new(from.clone()),
        to: HostHandle::new(to.clone()),
        hold: false,
        report,
        gate: Arc::default(),
        done: false,
    })
}

/// An actor with state in `pool`, idle.
fn idle_actor(pool: &Pool, id: u64) {
    pool.send(to(id, "hello")).unwrap();
    let t = pool.try_next().unwrap();
    assert!(pool.finish(t.id, actor()).is_empty());
}

#[test]
fn the_export_runs_before_what_waits_and_a_paused_actor_is_not_taken() {
    let (old, new) = (Arc::new(Pool::new(2, Default::default())), Arc::new(Pool::new(2, Default::default())));
    idle_actor(&old, 1);
    old.send(to(1, "a")).unwrap();
    assert!(old.export(1, a_move(&old, &new)).is_ok());
    let turn = old.try_next().expect("the export's turn");
    assert_eq!(texts(&turn), ["<export>", "a"]);
    // The thread exports, then pauses the actor with what followed the export: nothing is
    // handed out any more, and a second upgrade of the same actor is refused.
    let mut work = turn.work.into_iter();
    let _export = work.next();
    old.pause(1, turn.actor.unwrap(), work.collect());
    old.send(to(1, "b")).unwrap();
    assert!(old.try_next().is_none(), "a paused actor is not handed to a thread");
    assert!(old.export(1, a_move(&old, &new)).is_err());
    assert_eq!(old.load().3, 2, "both messages wait");

    // The move fails: the actor resumes on the old version with what waited, in order.
    old.resume(1);
    let turn = old.try_next().expect("resumed");
    assert_eq!(texts(&turn), ["a", "b"]);
    assert!(turn.actor.is_some());
}

#[test]
fn what_waited_goes_first_on_the_new_version_and_late_arrivals_follow() {
    let (old, new) = (Arc::new(Pool::new(2, Default::default())), Arc::new(Pool::new(2, Default::default())));
    idle_actor(&old, 7);
    old.send(to(7, "a")).unwrap();
    assert!(old.export(7, a_move(&old, &new)).is_ok());
    let turn = old.try_next().unwrap();
    let mut work = turn.work.into_iter();
    let Some(Work::Export(mv)) = work.next() else { panic!("the export comes first") };
    old.pause(7, turn.actor.unwrap(), work.collect());
    old.send(to(7, "b")).unwrap();

    // The new version imports: its thread holds the actor's new mailbox.
    let job = Box::new(crate::host::migrate::Import {
        migration: Vec::new(),
        paused_at: std::time::Instant::now(),
        mv,
    });
    new.import(7, job).unwrap_or_else(|_| panic!("the new version takes the import"));
    let import = new.try_next().unwrap();
    assert_eq!(texts(&import), ["<import>"]);
    // Commit, as the importing thread does: the old version hands over "a", "b"; from now on
    // it forwards, and drops its copy of the state on one of its own threads.
    let waiting = old.hand_over(7, new.clone());
    new.take_over(7, waiting, None);
    old.send(to(7, "c")).unwrap();
    assert!(new.finish(7, actor()).is_empty());
    new.send(to(7, "d")).unwrap();
    let turn = new.try_next().unwrap();
    assert_eq!(texts(&turn), ["a", "b", "c", "d"]);

    let drop_turn = old.try_next().expect("the old state is dropped by the old version");
    assert_eq!(texts(&drop_turn), ["<drop true>"]);
    assert!(drop_turn.actor.is_some());
    assert!(old.finish(7, None).is_empty());
    // Still a forwarder after the drop.
    old.send(to(7, "e")).unwrap();
    assert!(new.finish(7, turn.actor).is_empty());
    assert_eq!(texts(&new.try_next().unwrap()), ["e"]);
    assert!(old.try_next().is_none());
}
