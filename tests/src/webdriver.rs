//! A small WebDriver client for the browser tests: starts Debian's `chromedriver` on a free
//! port, opens headless Chromium sessions with fresh profiles, and speaks the few W3C
//! WebDriver commands the tests need (navigate, find, click, type, run a script, take a
//! screenshot). [`with_screenshots`] runs a test body and, if it panics, saves a screenshot
//! of every browser and names the files in the failure.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::free_addr;

/// The W3C name of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to start listening.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `wait_until` re-runs its script.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a single WebDriver command may take (a session start launches Chromium).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium flags this machine needs: no sandbox as root, and no background
/// connections (the network is closed, and refused connections slow every start).
const CHROMIUM_FLAGS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    "--lang=en-US",
];

fn tool(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} not found at {} (set {env} to another path). The browser tests need Debian's \
         chromium and chromium-driver packages: `.ci/run` installs them, or run \
         `apt-get install -y chromium chromium-driver`.",
        path.file_name().unwrap_or_default().to_string_lossy(),
        path.display()
    );
    path
}

/// A running chromedriver; killed on drop, with the profiles of its sessions.
pub struct Driver {
    base: String,
    http: reqwest::Client,
    chromium: PathBuf,
    child: Option<Child>,
    profiles: tempfile::TempDir,
}

impl Driver {
    /// Starts `$CHROMEDRIVER` (default `/usr/bin/chromedriver`) for `$CHROMIUM` (default
    /// `/usr/bin/chromium`); fails the test, saying how to install them, if either is missing.
    pub async fn start() -> Driver {
        let chromium = tool("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("CHROMEDRIVER", "/usr/bin/chromedriver");
        let addr = free_addr();
        let port = addr.rsplit(':').next().expect("port").to_owned();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning chromedriver");
        let driver = Driver {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(COMMAND_TIMEOUT)
                .build()
                .expect("http client"),
            chromium,
            child: Some(child),
            profiles: tempfile::tempdir().expect("profiles dir"),
        };
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start listening on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless Chromium with an empty profile; `name` labels its screenshots.
    pub async fn browser(&self, name: &str) -> Browser {
        let profile = self.profiles.path().join(name);
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
        }}});
        let answer = command(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.base),
            Some(capabilities),
        )
        .await
        .unwrap_or_else(|error| panic!("starting Chromium failed: {error}"));
        let id = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            name: name.to_owned(),
            session: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends one WebDriver command; the answer's `value`, or the driver's error as text.
async fn command(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(answer["value"].clone())
    } else {
        Err(format!(
            "{method} {url}: {status}: {} {}",
            answer["value"]["error"].as_str().unwrap_or(""),
            answer["value"]["message"]
                .as_str()
                .unwrap_or(&text)
                .lines()
                .next()
                .unwrap_or("")
        ))
    }
}

/// One browser session. Cheap to clone; [`with_screenshots`] closes it.
#[derive(Clone)]
pub struct Browser {
    pub name: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        command(&self.http, method, &format!("{}{path}", self.session), body)
            .await
            .unwrap_or_else(|error| panic!("browser {}: {error}", self.name))
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Re-runs `script` until it returns something truthy and returns that; fails the test
    /// after `timeout` naming `what` and the last value seen.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Vec<Value>,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script, args.clone()).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "browser {}: {what} did not happen within {timeout:?} (last value {value})",
                self.name
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits for an element matching `css` and returns its reference.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = command(
                &self.http,
                reqwest::Method::POST,
                &format!("{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
            if let Ok(element) = found {
                return element[ELEMENT_KEY]
                    .as_str()
                    .expect("element id")
                    .to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "browser {}: no element matches {css}",
                self.name
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends `action` (`click`, `clear`, `value`) to the element matching `css`.
    async fn act(&self, css: &str, action: &str, body: Value) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/{action}"),
            Some(body),
        )
        .await;
    }

    /// Clicks the element matching `css`, as a person would (scrolled into view, at its
    /// centre; fails if something covers it).
    pub async fn click(&self, css: &str) {
        self.act(css, "click", json!({})).await;
    }

    /// Types `text` into the element matching `css` (`\u{E007}` is Enter).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.act(css, "value", json!({ "text": text })).await;
    }

    /// Empties the input matching `css`.
    pub async fn clear(&self, css: &str) {
        self.act(css, "clear", json!({})).await;
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let encoded = command(
            &self.http,
            reqwest::Method::GET,
            &format!("{}/screenshot", self.session),
            None,
        )
        .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Ends the session (closes Chromium).
    pub async fn close(&self) {
        let _ = command(&self.http, reqwest::Method::DELETE, &self.session, None).await;
    }
}

/// Where failure screenshots go: `target/web-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned();
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"))
        .join("web-screenshots")
}

/// Runs `body`, then closes every browser; if it panicked, first saves
/// `<test>-<browser>.png` of every browser and fails with the original message followed by
/// the screenshot paths. (Closing matters: Chromium outlives a killed chromedriver.)
pub async fn with_screenshots<F>(test: &str, browsers: &[Browser], body: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let Err(error) = tokio::spawn(body).await else {
        for browser in browsers {
            browser.close().await;
        }
        return;
    };
    let message = if error.is_panic() {
        let payload = error.into_panic();
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the test panicked".to_owned())
    } else {
        format!("the test was cancelled: {error}")
    };
    let mut shots = Vec::new();
    for browser in browsers {
        let path = screenshot_dir().join(format!("{test}-{}.png", browser.name));
        match browser.screenshot(&path).await {
            Ok(()) => shots.push(format!("  {}: {}", browser.name, path.display())),
            Err(e) => shots.push(format!("  {}: no screenshot ({e})", browser.name)),
        }
        browser.close().await;
    }
    panic!("{message}\nscreenshots:\n{}", shots.join("\n"));
}
