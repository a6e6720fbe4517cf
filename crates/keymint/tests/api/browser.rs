//! The operator console in a real browser: Debian's headless Chromium,
//! driven through its ChromeDriver (fantoccini). Skipped with a notice
//! where ChromeDriver is not installed, unless
//! KEYMINT_TEST_REQUIRE_BROWSER=1 (`.ci/run` installs it and sets that).
//! Each test writes a screenshot of the pages it saw under
//! `target/tmp/screenshots/`.

use crate::both_databases;
use crate::helpers::{Db, TestApp, sale_form, spawn_app, with};
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A ChromeDriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, or None (with a notice) where none can be had.
async fn browser() -> Option<(Driver, Client)> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("KEYMINT_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "KEYMINT_TEST_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing"
        );
        eprintln!(
            "notice: browser test skipped: install Debian's chromium and chromium-driver to run it"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    // ChromeDriver takes a moment to listen: try until it answers, for at
    // most 20 seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.clone());
        match builder
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(client) => return Some((driver, client)),
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no browser session from ChromeDriver: {e}"),
        }
    }
}

/// Writes the page's screenshot to `target/tmp/screenshots/<name>.png`.
async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element `css` selects, once it exists.
async fn text_of(client: &Client, css: &str) -> String {
    element(client, css).await.text().await.unwrap()
}

/// The element `css` selects, once the page has it (pages load after a
/// click; the test waits for the next page's own element, never a time).
async fn element(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

async fn fill(client: &Client, css: &str, text: &str) {
    element(client, css).await.send_keys(text).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    element(client, css).await.click().await.unwrap();
}

async fn an_operator_signs_in_finds_a_license_and_revokes_it_in_a_browser(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let sale = with(sale_form("BROWSER-1"), "email", "browser@example.com");
    let key = app.gumroad_sale(&sale).await.to_string();
    let token = app.admin_token("ops-browser").await;
    let tag = format!("{db:?}").to_lowercase();
    run(&app, &client, &key, &token, &tag).await;
    client.close().await.unwrap();
}

async fn run(app: &TestApp, client: &Client, key: &str, token: &str, tag: &str) {
    // Not signed in: the console sends the browser to its sign-in page.
    client.goto(&app.url("/console")).await.unwrap();
    element(client, "#token").await;
    assert_eq!(text_of(client, "h1").await, "Sign in");
    screenshot(client, &format!("console-sign-in-{tag}")).await;
    fill(client, "#token", token).await;
    click(client, "form button[type=submit]").await;
    // The overview, with its chart of today's sale.
    let chart = element(client, "svg.chart").await;
    assert_eq!(text_of(client, "main h1").await, "Overview");
    let label = chart.attr("aria-label").await.unwrap().unwrap();
    assert!(label.starts_with("1 licenses minted"), "{label}");
    screenshot(client, &format!("console-overview-{tag}")).await;

    // Find the license by email, and open it.
    click(client, "nav a[href='/console/licenses']").await;
    fill(client, "#q", "browser@example.com").await;
    click(client, "form.search button").await;
    // The results page (its field holds the query), not the list before.
    element(client, "#q[value='browser@example.com']").await;
    click(client, &format!("a[href='/console/licenses/{key}']")).await;
    element(client, "#history").await;
    assert!(text_of(client, "main h1").await.contains(key));

    // Revoke it with a reason, and see why in its history.
    fill(client, "#reason", "refund asked by phone").await;
    click(client, "form[action$='/status'] button").await;
    assert_eq!(text_of(client, ".notice").await, "Revoked.");
    let history = text_of(client, "#history table").await;
    assert!(history.contains("refund asked by phone"), "{history}");
    assert!(history.contains("console:ops-browser"), "{history}");
    screenshot(client, &format!("console-license-{tag}")).await;

    // Signing out ends the session.
    click(client, "form.signout button").await;
    element(client, "#token").await;
    client.goto(&app.url("/console/licenses")).await.unwrap();
    element(client, "#token").await;
    assert_eq!(text_of(client, "h1").await, "Sign in");
}

both_databases!(an_operator_signs_in_finds_a_license_and_revokes_it_in_a_browser);
