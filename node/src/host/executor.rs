//! Version hosts: the threads that own a loaded version and are the only ones to run its code.
//!
//! A running version has a pool of threads (see [`super::pool`] and [`super::worker`]). The
//! first one copies the version's libraries (see [`crate::store::libcopy`]), dlopens them,
//! calls `init`, reports the version ready, then runs actors like every other thread of the
//! version; more are started while work waits, up to the node's `--version-threads`. When the
//! version retires, its threads exit; the last one starts a **closer** thread, calls
//! `on_unload` (the closer times it) and exits. The closer waits for every thread of the
//! version to exit, *then* dlcloses the libraries and frees their copies. Closing only after
//! the threads that ran plugin code have exited is what makes unloading safe: a TLS destructor
//! or pthread-key destructor registered by plugin code has run (or pinned the library) before
//! the code is unmapped (`reference/dylib-unloading.md` §2.3).
//!
//! No plugin code ever runs on the node's tokio workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use troupe_actor_abi::abi::{self, OutSink};

use super::closer::{hand_over, Closing, Libraries as Closed, Phase, Threads};
use super::effect::{HostHandle, VersionStats};
use super::host_api::HOST_API;
use super::plugin::{Plugin, PluginInfo};
use super::pool::Pool;
use super::worker::{Runner, Worker};
use super::{NodeSeam, VersionEnd};
use crate::store::libcopy::LibImage;

/// What a version host reports once its libraries are open and initialised.
pub(crate) struct Ready {
    /// What each library's root declares.
    pub infos: Vec<PluginInfo>,
    /// Where each library's copy is (for status).
    pub shown: Vec<String>,
    /// How long copying the libraries took.
    pub copy: Duration,
}

/// Why a version host did not start.
pub(crate) enum StartError {
    /// A library could not be copied (see [`LibImage::create`]).
    Copy(std::io::Error),
    /// A library was refused or failed to initialise.
    Plugin(String),
}

/// The libraries of a version, as [`start`] takes them.
pub(crate) struct Libraries {
    pub files: Vec<crate::store::archive::SourceFile>,
    pub copies: crate::model::config::LibCopies,
    pub store: PathBuf,
}

/// Starts a version host: its first thread copies the libraries (see
/// [`crate::store::libcopy`]), opens, checks and initialises them, then runs the version's
/// actors, with up to `threads` threads. Returns at once; the receiver says when the version
/// is ready, or why it failed.
pub(crate) fn start(
    node: Arc<dyn NodeSeam>,
    hash: String,
    gen: u64,
    libs: Libraries,
    stats: Arc<VersionStats>,
    threads: usize,
) -> Result<(HostHandle, ReadyReceiver), String> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (first_tx, first_rx) = std::sync::mpsc::sync_channel::<JoinHandle<()>>(1);
    let pool = Arc::new(Pool::new(threads, stats));
    let launch = Launch { node, hash, gen, libs, pool: pool.clone(), first: first_rx };
    let handle = std::thread::Builder::new()
        .name(thread_name(&launch.hash))
        .spawn(move || first_thread(launch, ready_tx))
        .map_err(|e| format!("cannot spawn the version's thread: {e}"))?;
    // The closer joins the first thread through this handle.
    let _ = first_tx.send(handle);
    Ok((HostHandle::new(pool), ready_rx))
}

/// Where [`start`] says when the version is ready, or why it failed.
pub(crate) type ReadyReceiver = tokio::sync::oneshot::Receiver<Result<Ready, StartError>>;

fn thread_name(hash: &str) -> String {
    format!("troupe-v-{}", hash.chars().take(8).collect::<String>())
}

/// What the first thread starts with.
struct Launch {
    node: Arc<dyn NodeSeam>,
    hash: String,
    gen: u64,
    libs: Libraries,
    pool: Arc<Pool>,
    /// For the closer: the first thread's own handle.
    first: Receiver<JoinHandle<()>>,
}

/// The version's first thread: copies and opens the libraries, runs actors until retired (or
/// idle, once other threads took over), and hands the still open libraries to a closer if it
/// is the last.
fn first_thread(launch: Launch, ready: tokio::sync::oneshot::Sender<Result<Ready, StartError>>) {
    let Launch { node, hash, gen, libs, pool, first } = launch;
    let t0 = Instant::now();
    let images = match copy_libraries(libs, &format!("{hash}-{gen}")) {
        Ok(images) => images,
        Err(e) => {
            let _ = ready.send(Err(StartError::Copy(e)));
            node.version_ended(&hash, gen, VersionEnd::Gone { close_time: Duration::ZERO });
            return;
        }
    };
    let copy = t0.elapsed();
    let shown: Vec<String> = images.iter().map(|i| i.shown().to_string()).collect();
    let (plugins, failed) = open_libraries(&images);
    if let Some(e) = failed {
        let _ = ready.send(Err(StartError::Plugin(e)));
        let threads = Threads { first, others: Vec::new() };
        let libraries = Closed::Opened(plugins);
        let (_, phase_rx) = std::sync::mpsc::channel::<Phase>();
        hand_over(Closing { node, hash, gen, images, threads, libraries }, phase_rx);
        return;
    }
    let (mut types, mut type_names) = (HashMap::new(), Vec::new());
    for (i, p) in plugins.iter().enumerate() {
        for t in &p.info.actor_types {
            types.insert(t.name.clone(), (i as u32, type_names.len() as u32));
            type_names.push(t.name.clone());
        }
    }
    let infos = plugins.iter().map(|p| p.info.clone()).collect();
    let closing = Mutex::new(Some((images, first)));
    let run = Arc::new(Runner { node, hash, gen, plugins, types, type_names, pool: pool.clone(), closing });
    pool.running(spawner(Arc::downgrade(&run)));
    let _ = ready.send(Ok(Ready { infos, shown, copy }));
    if Worker::new(run.clone(), 0).run() {
        retire(run);
    }
}

/// How the pool starts another thread of the version, on slot `slot`. The pool holds the
/// version only weakly: the threads own it, and the closer takes it from the last one.
fn spawner(run: std::sync::Weak<Runner>) -> super::pool::Spawner {
    Box::new(move |slot| {
        let Some(run) = run.upgrade() else {
            return Err(std::io::Error::other("the version is closing"));
        };
        let name = thread_name(&run.hash);
        std::thread::Builder::new().name(name).spawn(move || {
            if Worker::new(run.clone(), slot).run() {
                retire(run);
            }
        })
    })
}

/// The last thread of a retiring version: starts the closer, then drops what is left and runs
/// `on_unload` (timed by the closer).
fn retire(run: Arc<Runner>) {
    let taken = run.closing.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some((images, first)) = taken else {
        return;
    };
    let threads = Threads { first, others: run.pool.take_handles() };
    let (phase_tx, phase_rx) = std::sync::mpsc::channel::<Phase>();
    let (node, hash, gen) = (run.node.clone(), run.hash.clone(), run.gen);
    let mut worker = Worker::new(run.clone(), 0);
    let libraries = Closed::Running(run);
    if hand_over(Closing { node, hash, gen, images, threads, libraries }, phase_rx) {
        let _ = phase_tx.send(Phase::Retiring);
        worker.retire();
    }
}

/// Copies each library to a place unique to this version (see [`crate::store::libcopy`]). On
/// failure nothing was opened: the copies made so far go at once.
fn copy_libraries(libs: Libraries, stem: &str) -> std::io::Result<Vec<LibImage>> {
    let mut images = Vec::with_capacity(libs.files.len());
    for f in libs.files {
        match LibImage::create(libs.copies, &libs.store, stem, &f.name, &f.bytes) {
            Ok(i) => images.push(i),
            Err(e) => {
                images.into_iter().for_each(LibImage::release);
                return Err(e);
            }
        }
    }
    Ok(images)
}

/// Reads every library's root from its file (none is loaded yet: a library without a valid
/// root is refused before any constructor of the version runs), then opens (checking each
/// root again) and initialises every library; the ones opened so far, and why the rest
/// failed, if they did.
fn open_libraries(images: &[LibImage]) -> (Vec<Plugin>, Option<String>) {
    let mut plugins = Vec::new();
    let roots =
        match images.iter().map(|i| crate::store::root::read_file(i.path())).collect::<Result<Vec<_>, _>>() {
            Ok(roots) => roots,
            Err(e) => return (plugins, Some(e.to_string())),
        };
    for (image, root) in images.iter().zip(&roots) {
        match Plugin::open_read(image.path(), root) {
            Ok(p) => plugins.push(p),
            Err(e) => return (plugins, Some(e.to_string())),
        }
    }
    for p in &plugins {
        let mut err = Vec::new();
        // SAFETY: the root was checked in Plugin::open; HOST_API lives for the whole
        // process; we are on the version's own thread.
        let st = unsafe { (p.root().init)(&HOST_API, OutSink::for_vec(&mut err)) };
        if st != abi::STATUS_OK {
            let why =
                format!("plugin {} failed to initialise: {}", p.info.name, String::from_utf8_lossy(&err));
            return (plugins, Some(why));
        }
    }
    (plugins, None)
}
