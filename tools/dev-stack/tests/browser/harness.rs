//! A real browser for the journeys: headless Chromium driven over WebDriver by a chromedriver
//! this harness starts on a free loopback port, with a fresh profile. Dropping the [`Browser`]
//! kills chromedriver and every Chromium process it started (they share a process group) and
//! removes the profile.
//!
//! Elements are found the way a person (or a screen reader) finds them: a field by its label,
//! a button or a link by its name, a part of a page by its heading (`<section
//! aria-labelledby>`), a table's row by what one of its cells reads, a page's answer by its
//! `status` role. What is asserted is the text the browser renders (`innerText`), never the
//! stack's internals. The one exception is a field no person sees, a form's hidden
//! idempotency key, read and set by its id to send the same form twice.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long text may take to appear (a webhook landing, a page loading) before a test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// Two cores are shared by the whole machine: one browser at a time keeps each journey quick
/// and the rest of the machine usable. (Tokio's semaphore works across the tests' runtimes.)
static ONE_BROWSER_AT_A_TIME: Semaphore = Semaphore::const_new(1);

/// Start flags that work on a machine with no route to the internet: without the
/// background-networking ones, Chromium keeps opening connections that are refused.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

/// What the page is shown in: its viewport, in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    /// A phone: Chromium emulates one (the page's `viewport` meta tag applies, touch input).
    pub phone: bool,
}

impl Window {
    pub const DESKTOP: Window = Window {
        width: 1280,
        height: 800,
        phone: false,
    };
    /// A common phone held upright.
    pub const PHONE: Window = Window {
        width: 390,
        height: 844,
        phone: true,
    };
}

/// chromedriver (and, below it, Chromium) running in its own process group, and the profile
/// directory it was given.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver, the browser and its renderers. A group id is the
        // leader's pid, and chromedriver was started as a group leader.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One tab of the browser (see [`Browser::open_in_new_tab`]).
#[derive(Debug, Clone)]
pub struct Tab(WindowHandle);

pub struct Browser {
    client: Client,
    base: String,
    window: Window,
    // Dropped after the client: the session goes before its processes.
    _driver: Driver,
    _turn: SemaphorePermit<'static>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, at `base` (the dev
    /// stack's URL, which relative paths are resolved against).
    pub async fn start(base: &str, window: Window) -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the browser tests need Chromium and ChromeDriver ({CHROMIUM}, {CHROMEDRIVER}), which \
             are missing: run scripts/test, which installs them (as root: apt-get install -y \
             --no-install-recommends chromium chromium-driver)"
        );
        let turn = ONE_BROWSER_AT_A_TIME
            .acquire()
            .await
            .expect("the browser gate is never closed");
        let driver = start_chromedriver().await;
        let webdriver = format!("http://127.0.0.1:{}", driver.port);
        let client = connect(&webdriver, &driver.profile, window).await;
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            window,
            _driver: driver,
            _turn: turn,
        }
    }

    /// Ends the WebDriver session, which closes Chromium; the processes are killed on drop
    /// whatever happens.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Opens a path of the dev stack (`/`, `/demo/state`).
    pub async fn open(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the URL")
            .to_string()
    }

    /// The page's `<h1>`, as shown.
    pub async fn heading(&self) -> String {
        self.text_of(&self.find("the page heading", Locator::Css("h1")).await)
            .await
    }

    /// Waits until the page's `<h1>` reads `heading` (a click may still be loading the page).
    pub async fn wait_for_heading(&self, heading: &str) {
        let xpath = format!("//h1[normalize-space()={}]", literal(heading));
        self.wait_for(&format!("a page headed {heading:?}"), &xpath)
            .await;
    }

    /// The text of the part of the page under the heading `name` (a `<section>` labelled by
    /// its heading: a region, to assistive technology).
    pub async fn region(&self, name: &str) -> String {
        let region = self
            .find(
                &format!("the region {name:?}"),
                Locator::XPath(&region_xpath(name)),
            )
            .await;
        self.text_of(&region).await
    }

    /// The rows of the table in the region `name`, each as its cells' text.
    pub async fn table(&self, name: &str) -> Vec<Vec<String>> {
        let script = "const [xpath] = arguments;\
            const region = document.evaluate(xpath, document, null, \
              XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;\
            if (!region) { return null; }\
            return Array.from(region.querySelectorAll('tbody tr'))\
              .map(tr => Array.from(tr.cells).map(td => td.innerText.trim()));";
        let rows = self
            .client
            .execute(script, vec![json!(region_xpath(name))])
            .await
            .expect("the script runs");
        let Value::Array(rows) = rows else {
            panic!("there is no region {name:?} on {}", self.url().await)
        };
        rows.into_iter()
            .map(|row| match row {
                Value::Array(cells) => cells
                    .into_iter()
                    .map(|c| c.as_str().unwrap_or_default().to_owned())
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Waits until the page's live status message (role `status`) says `want`; returns it.
    pub async fn wait_for_status(&self, want: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self
                .find("the status message", Locator::Css("[role=status]"))
                .await;
            let text = self.text_of(&status).await;
            if text.contains(want) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the status still says {text:?}, not {want:?}, on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the field labelled `label` (a `<label for>`), replacing what is there.
    pub async fn fill(&self, label: &str, text: &str) {
        let field = self.field(label).await;
        field.clear().await.expect("the field clears");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {label:?}: {e}"));
    }

    /// What the field labelled `label` holds.
    pub async fn value_of(&self, label: &str) -> String {
        self.field(label)
            .await
            .prop("value")
            .await
            .expect("the field's value")
            .unwrap_or_default()
    }

    /// Picks the option that starts with `option` in the list labelled `label`.
    pub async fn choose(&self, label: &str, option: &str) {
        let list = self.field(label).await;
        let xpath = format!(
            ".//option[starts-with(normalize-space(), {})]",
            literal(option)
        );
        list.select_by(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("{label:?} has no option {option:?}: {e}"));
    }

    /// Clicks the button named `name` (its text or `aria-label`) and waits for the page it
    /// leads to (every button of these pages submits a form).
    pub async fn press(&self, name: &str) {
        self.press_at(&format!("a button {name:?}"), "", name).await;
    }

    /// Like [`Browser::press`], for the button `name` in one row of the table in the region
    /// `region`: the row with a cell that reads `row` (a customer, an order id).
    pub async fn press_in_row(&self, region: &str, row: &str, name: &str) {
        let what = format!("a button {name:?} in the row {row:?} of {region:?}");
        self.press_at(&what, &row_xpath(region, row), name).await;
    }

    /// Like [`Browser::fill`], for the field labelled `label` in one row of the table in the
    /// region `region` (see [`Browser::press_in_row`]).
    pub async fn fill_in_row(&self, region: &str, row: &str, label: &str, text: &str) {
        let (r, l) = (row_xpath(region, row), literal(label));
        let xpath = format!("{r}//*[@id = {r}//label[normalize-space()={l}]/@for]");
        let what = format!("a field labelled {label:?} in the row {row:?} of {region:?}");
        let field = self.find(&what, Locator::XPath(&xpath)).await;
        field.clear().await.expect("the field clears");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {label:?}: {e}"));
    }

    /// The button named `name` under the element at `within` (an XPath; empty: the page),
    /// clicked, and the page it leads to waited for.
    async fn press_at(&self, what: &str, within: &str, name: &str) {
        let n = literal(name);
        let xpath = format!("{within}//button[normalize-space()={n} or @aria-label={n}]");
        let button = self.find(what, Locator::XPath(&xpath)).await;
        self.navigating(|| async {
            button
                .click()
                .await
                .unwrap_or_else(|e| panic!("cannot press {name:?}: {e}"))
        })
        .await;
    }

    /// The live status message (role `status`) in the region `name`, as shown now.
    pub async fn status_in(&self, name: &str) -> String {
        let xpath = format!("{}//*[@role='status']", region_xpath(name));
        let what = format!("a status message in the region {name:?}");
        self.text_of(&self.find(&what, Locator::XPath(&xpath)).await)
            .await
    }

    /// What the element with the id `id` holds: for a field a person does not see (a hidden
    /// idempotency key), which has no label to find it by.
    pub async fn value_of_id(&self, id: &str) -> String {
        self.find(&format!("an element #{id}"), Locator::Id(id))
            .await
            .prop("value")
            .await
            .expect("the element's value")
            .unwrap_or_default()
    }

    /// Puts `value` into the field with the id `id`, which a person cannot type into (a hidden
    /// idempotency key): to send a form again exactly as it was sent before, as a double click
    /// or a browser retrying a request whose answer was lost does.
    pub async fn set_value_of_id(&self, id: &str, value: &str) {
        let set = self
            .client
            .execute(
                "const [id, value] = arguments;\
                 const field = document.getElementById(id);\
                 if (field) { field.value = value; }\
                 return field !== null;",
                vec![json!(id), json!(value)],
            )
            .await
            .expect("the script runs");
        assert_eq!(set, Value::Bool(true), "there is no element #{id}");
    }

    /// The tab shown now, to come back to.
    pub async fn tab(&self) -> Tab {
        Tab(self.client.window().await.expect("the tab shown"))
    }

    /// Opens `path` in a new tab and shows it; the other tabs keep their pages as they were,
    /// unreloaded (a page left open while something else changed).
    pub async fn open_in_new_tab(&self, path: &str) -> Tab {
        let tab = self
            .client
            .new_window(true)
            .await
            .expect("a new tab opens")
            .handle;
        self.client
            .switch_to_window(tab.clone())
            .await
            .expect("the new tab can be shown");
        self.open(path).await;
        Tab(tab)
    }

    /// Shows `tab` again, at the page it was left at.
    pub async fn switch_to(&self, tab: &Tab) {
        self.client
            .switch_to_window(tab.0.clone())
            .await
            .expect("the tab can be shown");
    }

    /// Follows the link named `name` and waits for the page it leads to.
    pub async fn follow(&self, name: &str) {
        let n = literal(name);
        let xpath = format!("//a[normalize-space()={n} or @aria-label={n}]");
        let link = self
            .find(&format!("a link {name:?}"), Locator::XPath(&xpath))
            .await;
        self.navigating(|| async {
            link.click()
                .await
                .unwrap_or_else(|e| panic!("cannot follow {name:?}: {e}"))
        })
        .await;
    }

    /// Does `act` and waits until a new page has replaced the current one and has loaded (the
    /// old page is marked, so a page that reloads into the same address is told apart).
    async fn navigating<F, Fut>(&self, act: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        self.client
            .execute("window.__leaving = true;", vec![])
            .await
            .expect("the script runs");
        act().await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let arrived = self
                .client
                .execute(
                    "return window.__leaving === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            if arrived.is_ok_and(|a| a == Value::Bool(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the next page never loaded; the browser is at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves what the window shows to `target/browser/{name}.png`; returns the file.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("target/browser can be created");
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png).unwrap_or_else(|e| panic!("cannot write {file:?}: {e}"));
        file
    }

    /// Scrolls the page so that the region `name` starts at the top of the window.
    pub async fn scroll_to(&self, name: &str) {
        let found = self
            .client
            .execute(
                "const [xpath] = arguments;\
                 const region = document.evaluate(xpath, document, null, \
                   XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;\
                 if (region) { region.scrollIntoView(); }\
                 return region !== null;",
                vec![json!(region_xpath(name))],
            )
            .await
            .expect("the script runs");
        assert_eq!(found, Value::Bool(true), "there is no region {name:?}");
    }

    /// The page's full width and the window's: a page wider than its window scrolls sideways.
    pub async fn widths(&self) -> (u64, u64) {
        let sizes = self
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .expect("the script runs");
        let width = |i: usize| sizes[i].as_u64().expect("a width in pixels");
        (width(0), width(1))
    }

    /// Fails unless the page fits its window's width (and, on a phone, unless the page lays
    /// itself out for the phone's width rather than a desktop's zoomed out).
    pub async fn assert_no_sideways_scroll(&self) {
        let (page, window) = self.widths().await;
        assert_eq!(
            window,
            u64::from(self.window.width),
            "{} is laid out {window}px wide, not for a {}px screen (a viewport meta tag is missing?)",
            self.url().await,
            self.window.width
        );
        assert!(
            page <= window,
            "{} is {page}px wide in a {window}px window: it scrolls sideways",
            self.url().await
        );
    }

    async fn field(&self, label: &str) -> Element {
        let l = literal(label);
        let xpath = format!(
            "//*[@id = //label[normalize-space()={l}]/@for] | \
             //input[@aria-label={l}] | //select[@aria-label={l}]"
        );
        self.find(
            &format!("a field labelled {label:?}"),
            Locator::XPath(&xpath),
        )
        .await
    }

    async fn wait_for(&self, what: &str, xpath: &str) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(found) = self.client.find(Locator::XPath(xpath)).await {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never showed up; the browser is at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, what: &str, locator: Locator<'_>) -> Element {
        match self.client.find(locator).await {
            Ok(found) => found,
            Err(e) => {
                let shown = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!(
                    "there is no {what} on {} ({e}); the page says:\n{shown}",
                    self.url().await
                )
            }
        }
    }

    async fn text_of(&self, element: &Element) -> String {
        element.text().await.expect("the element's text")
    }
}

/// An XPath string literal for any text (XPath has no escapes: quotes are spliced in).
fn literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// A `<section>` whose accessible name comes from its own heading.
fn region_xpath(name: &str) -> String {
    format!(
        "//section[@aria-labelledby = .//*[normalize-space()={}]/@id]",
        literal(name)
    )
}

/// The body row of the table in the region `region` with a cell that reads `row`.
fn row_xpath(region: &str, row: &str) -> String {
    format!(
        "{}//tbody/tr[td[normalize-space()={}]]",
        region_xpath(region),
        literal(row)
    )
}

/// `target/browser`, in whatever target directory cargo builds into.
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser")
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

/// A profile directory no other run uses.
fn fresh_profile() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oen-dev-browser-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a profile directory in the temp dir");
    dir
}

async fn start_chromedriver() -> Driver {
    use std::os::unix::process::CommandExt;

    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so that everything it starts can be killed together.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
    let driver = Driver {
        child,
        port,
        profile: fresh_profile(),
    };
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    driver
}

async fn connect(webdriver: &str, profile: &Path, window: Window) -> Client {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut options = json!({ "binary": CHROMIUM });
    if window.phone {
        options["mobileEmulation"] = json!({
            "deviceMetrics": {
                "width": window.width, "height": window.height,
                "pixelRatio": 2, "mobile": true, "touch": true,
            },
        });
    } else {
        args.push(format!("--window-size={},{}", window.width, window.height));
    }
    options["args"] = json!(args);
    let Value::Object(capabilities) = json!({
        "browserName": "chrome",
        "goog:chromeOptions": options,
    }) else {
        unreachable!("a JSON object")
    };
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .unwrap_or_else(|e| panic!("chromedriver at {webdriver} did not open Chromium: {e}"));
    if !window.phone {
        fit_viewport(&client, window).await;
    }
    client
}

/// Grows the window by whatever the browser's own frame takes, so that the page gets exactly
/// the size asked for.
async fn fit_viewport(client: &Client, window: Window) {
    let inner = client
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .expect("the script runs");
    let (Some(w), Some(h)) = (inner[0].as_u64(), inner[1].as_u64()) else {
        panic!("the window has no size: {inner}")
    };
    let (ow, oh) = client.get_window_size().await.expect("the window's size");
    let width = ow + u64::from(window.width) - w;
    let height = oh + u64::from(window.height) - h;
    client
        .set_window_size(
            u32::try_from(width).expect("a window width"),
            u32::try_from(height).expect("a window height"),
        )
        .await
        .expect("the window can be resized");
}
