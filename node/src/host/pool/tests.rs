//! The run queue on its own: turns, order, fairness, growth, idle exit and retirement, with
//! no plugin (work items stand in for calls).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use troupe_actor_abi::message::{Incoming, Payload};

use super::*;

fn text(s: &str) -> Cmd {
    Cmd::Deliver { id: 0, msg: Delivery::Msg(Incoming { sender: None, payload: Payload::Text(s.into()) }) }
}

fn to(id: u64, s: &str) -> Cmd {
    match text(s) {
        Cmd::Deliver { msg, .. } => Cmd::Deliver { id, msg },
        other => other,
    }
}

fn texts(turn: &Turn) -> Vec<String> {
    turn.work
        .iter()
        .map(|w| match w {
            Work::Deliver(Delivery::Msg(Incoming { payload: Payload::Text(t), .. })) => t.clone(),
            _ => String::new(),
        })
        .collect()
}

fn actor() -> Option<ActorState> {
    Some(ActorState { plugin: 0, kind: 0, state: std::ptr::null_mut() })
}

#[test]
fn an_actor_is_taken_by_one_thread_at_a_time_and_its_messages_keep_their_order() {
    let pool = Pool::new(4, Default::default());
    pool.send(to(1, "a")).unwrap();
    let first = pool.try_next().expect("a turn");
    // More for the same actor while its turn runs: queued, not handed to a second thread.
    pool.send(to(1, "b")).unwrap();
    pool.send(to(1, "c")).unwrap();
    assert!(pool.try_next().is_none(), "the actor is busy on another thread");
    assert_eq!(texts(&first), ["a"]);
    assert!(pool.finish(1, actor()).is_empty());
    let second = pool.try_next().expect("the rest");
    assert_eq!(texts(&second), ["b", "c"]);
    assert!(second.actor.is_some(), "the actor's state comes with its turn");
}

#[test]
fn a_flooded_actor_gives_way_after_a_batch() {
    let pool = Pool::new(1, Default::default());
    for i in 0..(BATCH * 3) {
        pool.send(to(1, &i.to_string())).unwrap();
    }
    pool.send(to(2, "sibling")).unwrap();
    let t = pool.try_next().unwrap();
    assert_eq!((t.id, t.work.len()), (1, BATCH));
    pool.finish(1, actor());
    let t = pool.try_next().unwrap();
    assert_eq!((t.id, texts(&t)), (2, vec!["sibling".to_string()]), "the sibling's turn comes next");
    assert_eq!(pool.load().3, BATCH * 2, "the rest of the flood waits");
}

#[test]
fn what_waits_for_an_actor_that_is_gone_comes_back_to_be_answered() {
    let pool = Pool::new(1, Default::default());
    pool.send(to(5, "x")).unwrap();
    let t = pool.try_next().unwrap();
    pool.send(to(5, "y")).unwrap();
    drop(t);
    let left = pool.finish(5, None);
    assert_eq!(left.len(), 1);
    assert!(pool.try_next().is_none());
    assert_eq!(pool.load().3, 0);
}

#[test]
fn threads_are_added_while_work_waits_up_to_the_limit_and_the_last_one_retires_the_version() {
    let pool = Arc::new(Pool::new(3, Default::default()));
    let started = Arc::new(AtomicUsize::new(0));
    let (took_tx, took_rx) = std::sync::mpsc::channel::<()>();
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let (p, s, r) = (Arc::downgrade(&pool), started.clone(), release.clone());
    pool.running(Box::new(move |slot| {
        s.fetch_add(1, Ordering::SeqCst);
        let (p, took, r) = (p.clone(), took_tx.clone(), r.clone());
        std::thread::Builder::new().spawn(move || {
            let Some(pool) = p.upgrade() else { return };
            // A thread that takes one turn and holds it until the test lets go.
            if let Next::Run(_turn) = pool.next(slot) {
                let _ = took.send(());
                let mut go = r.0.lock().unwrap();
                while !*go {
                    go = r.1.wait(go).unwrap();
                }
            }
            while !matches!(pool.next(slot), Next::Exit | Next::Last) {}
        })
    }));
    // The starting thread (slot 0) holds a turn: each new actor with work starts one more
    // thread, up to the limit of 3.
    pool.send(to(99, "held")).unwrap();
    let _held = pool.try_next().expect("the starting thread's turn");
    for id in 1..=2 {
        pool.send(to(id, "work")).unwrap();
        // A thread just started looks for work itself: no other is started until it took a
        // turn.
        took_rx.recv().unwrap();
    }
    for id in 3..=5 {
        pool.send(to(id, "work")).unwrap();
    }
    assert_eq!(started.load(Ordering::SeqCst), 2, "two more threads, then the limit");
    let (busy, idle, limit, queued) = pool.load();
    assert_eq!((busy, idle, limit, queued), (3, 0, 3, 3), "three threads busy, three actors waiting");
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    pool.send(Cmd::Retire).unwrap();
    for h in pool.take_handles() {
        h.join().unwrap();
    }
    assert!(matches!(pool.next(0), Next::Last), "the starting thread is the last one");
    assert!(pool.send(to(9, "late")).is_err(), "a retired version takes nothing more");
}

#[test]
fn each_waiting_mailbox_gets_a_thread_even_while_one_is_between_turns() {
    let pool = Arc::new(Pool::new(4, Default::default()));
    let (took_tx, took_rx) = std::sync::mpsc::channel::<u64>();
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let (p, r) = (Arc::downgrade(&pool), release.clone());
    pool.running(Box::new(move |slot| {
        let (p, took, r) = (p.clone(), took_tx.clone(), r.clone());
        std::thread::Builder::new().spawn(move || {
            let Some(pool) = p.upgrade() else { return };
            // Each started thread takes one turn and holds it (a handler that never returns
            // until the test lets go).
            if let Next::Run(turn) = pool.next(slot) {
                let _ = took.send(turn.id);
                let mut go = r.0.lock().unwrap();
                while !*go {
                    go = r.1.wait(go).unwrap();
                }
                pool.finish(turn.id, actor());
            }
            while !matches!(pool.next(slot), Next::Exit | Next::Last) {}
        })
    }));
    // The starting thread ends a turn: it is between turns, and will take one mailbox itself.
    pool.send(to(1, "first")).unwrap();
    let t = pool.try_next().unwrap();
    assert!(pool.finish(t.id, actor()).is_empty());
    // Two actors get work before it looks again: it covers one; the other gets a thread of its
    // own, or it would wait behind whatever the starting thread takes next.
    pool.send(to(2, "spin")).unwrap();
    pool.send(to(3, "spin")).unwrap();
    let own = pool.try_next().expect("the starting thread's next turn").id;
    let other =
        took_rx.recv_timeout(Duration::from_secs(30)).expect("no thread took the other waiting actor");
    let mut both = [own, other];
    both.sort();
    assert_eq!(both, [2, 3], "both waiting actors run at once");
    // Likewise when a turn ends with its actor still busy and another actor waiting.
    pool.send(to(own, "more")).unwrap();
    pool.send(to(4, "spin")).unwrap();
    let more = pool.finish(own, actor());
    assert!(more.is_empty());
    let next = pool.try_next().expect("the starting thread's next turn").id;
    let started =
        took_rx.recv_timeout(Duration::from_secs(30)).expect("no thread took the other waiting actor");
    let mut both = [next, started];
    both.sort();
    let mut expected = [own, 4];
    expected.sort();
    assert_eq!(both, expected, "the waiting actor did not wait behind the busy one");
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    pool.send(Cmd::Retire).unwrap();
    for h in pool.take_handles() {
        h.join().unwrap();
    }
}

#[test]
fn a_long_call_is_reported_while_it_runs() {
    let pool = Pool::new(2, Default::default());
    pool.call_started(1, 42);
    // Reported as soon as it has run longer than the threshold (here: any time at all).
    // A guard against a call never reported; on a loaded machine this loop may be descheduled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let long = loop {
        let long = pool.long_calls(Duration::ZERO);
        if !long.is_empty() || Instant::now() > deadline {
            break long;
        }
        std::hint::spin_loop();
    };
    assert_eq!(long.iter().map(|l| l.0).collect::<Vec<_>>(), [42]);
    assert!(pool.long_calls(Duration::from_secs(3600)).is_empty(), "not longer than an hour");
    // Another call on the same thread is timed afresh.
    pool.call_ended(1);
    pool.call_started(1, 43);
    assert!(pool.long_calls(Duration::ZERO).is_empty(), "just seen: not long yet");
    pool.call_ended(1);
    assert!(pool.long_calls(Duration::ZERO).is_empty());
}
