//! The dashboard's tests' two processes: `troupe dashboard` ([`DashboardProc`], its address
//! and token read from what it prints at start, as an operator reads them) and a headless
//! Chromium driven through chromedriver over WebDriver with `fantoccini` ([`Browser`]), plus
//! [`http`] for requests a browser would not make (an action without a token).
//!
//! Chromium and chromedriver are Debian's (`make test` installs them when missing); without
//! them the tests fail saying so, never skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

use crate::build::{profile_dir, troupe_bin};
use crate::files::TestDir;
use crate::node::free_port;

/// How long the page may take to show something: generous, as every wait in these tests
/// (a refresh is a second; a loaded two-core machine may take many).
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running `troupe dashboard`, killed when dropped.
pub struct DashboardProc {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    /// The address it printed to open (with `?token=` when it has one).
    pub url: String,
    /// The token it printed, if any.
    pub token: Option<String>,
}

impl DashboardProc {
    /// `troupe dashboard NODE --listen LISTEN EXTRA...`; waits for its `open:` line.
    pub fn start(node: &str, listen: &str, extra: &[&str]) -> DashboardProc {
        let mut child = Command::new(troupe_bin())
            .args(["dashboard", node, "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run troupe dashboard");
        let out = child.stdout.take().expect("piped stdout");
        let mut token = None;
        let mut url = None;
        let mut base = None;
        for line in BufReader::new(out).lines() {
            let line = line.expect("dashboard output");
            if let Some(t) = line.strip_prefix("token: ") {
                token = Some(t.trim().to_string());
            }
            if let Some(rest) = line.split_once(" on http://").map(|(_, r)| r) {
                let port = rest.trim_end_matches('/').rsplit(':').next().unwrap_or_default().to_string();
                base = Some(format!("http://127.0.0.1:{port}"));
            }
            if let Some(u) = line.strip_prefix("open: ") {
                url = Some(u.trim().to_string());
                break;
            }
        }
        let (Some(url), Some(base)) = (url, base) else {
            let status = child.wait();
            panic!("troupe dashboard stopped before printing its address: {status:?}");
        };
        DashboardProc { child, base, url, token }
    }
}

impl Drop for DashboardProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 request to `base` (`http://127.0.0.1:PORT`): the status code and body.
pub fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("the dashboard accepts connections");
    s.set_read_timeout(Some(PAGE_TIMEOUT)).expect("a read timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).and_then(|_| s.write_all(body)).expect("request sent");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// chromedriver (in a process group of its own, with its Chromium) and a WebDriver session.
pub struct Browser {
    driver: Child,
    /// The session.
    pub client: Client,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with a fresh profile
    /// in `dir`.
    pub async fn start(dir: &TestDir, test: &str) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the dashboard tests need Debian's chromium and chromium-driver (make test installs them: apt-get install -y chromium chromium-driver)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cannot run chromedriver");
        let profile = dir.join(&format!("chromium-profile-{test}"));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1900",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let caps = caps.as_object().cloned().expect("an object");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session from chromedriver: {e}"),
                // chromedriver is still starting: its port does not answer yet.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let shots =
            profile_dir().parent().map(|p| p.join("dashboard-screenshots")).unwrap_or_default().join(test);
        // A fresh directory each run, so no screenshot of an earlier run is taken for this one's.
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        Browser { driver, client, shots }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// Runs `js` (a function body that returns a JSON value) in the page.
    pub async fn eval(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
    }

    /// Runs `js` until `done` holds for what it returns, within [`PAGE_TIMEOUT`]; returns it.
    pub async fn wait_until(&self, what: &str, js: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let v = self.eval(js).await;
            if done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.shot("timed-out").await;
                panic!(
                    "the page did not show {what} within {PAGE_TIMEOUT:?}; last: {v}; screenshot {}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.click().await.unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
    }

    /// Types `text` into `css` (for a file input: the file's path).
    pub async fn send_keys(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.send_keys(text).await.unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Saves a screenshot as `<target>/dashboard-screenshots/<test>/<name>.png`.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group, Chromium included: end them all by its id.
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
