//! The operator console and the buyer portal in a real browser: Debian's
//! headless Chromium,
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

/// At a phone's width (390 CSS pixels) the page needs no sideways
/// scrolling.
async fn fits_a_phone(client: &Client) {
    client.set_window_size(390, 844).await.unwrap();
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let [page, window] = [0, 1].map(|i| widths[i].as_f64().unwrap());
    assert!(
        page <= window,
        "the page is {page}px wide in a {window}px window"
    );
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
    // A refund that arrives before its sale fails (no license yet); the
    // sale follows, so a replay then applies it.
    let early = with(sale_form("BROWSER-EARLY"), "resource_name", "refund");
    let failed = app.gumroad(&early).await;
    assert_eq!(failed.status, "error");
    app.gumroad_sale(&sale_form("BROWSER-EARLY")).await;
    replay(&app, &client, failed.delivery_id.as_ref(), &tag).await;
    sign_out(&app, &client).await;
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
    fits_a_phone(client).await;
    screenshot(client, &format!("console-overview-phone-{tag}")).await;
    client.set_window_size(1280, 1000).await.unwrap();

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
}

/// Replays the failed delivery from its page and sees it processed; a
/// form whose CSRF token was tampered with is refused first. Screenshots
/// of the other pages on the way.
async fn replay(app: &TestApp, client: &Client, delivery: &str, tag: &str) {
    click(client, "nav a[href='/console/deliveries']").await;
    element(client, "#within").await;
    client
        .goto(&app.url("/console/deliveries?status=failed&within=24h"))
        .await
        .unwrap();
    element(client, "#within option[value='24h'][selected]").await;
    screenshot(client, &format!("console-deliveries-{tag}")).await;
    click(client, &format!("a[href='/console/deliveries/{delivery}']")).await;
    let form = format!("form[action='/console/deliveries/{delivery}/replay']");
    element(client, &form).await;
    assert!(text_of(client, "main h1").await.contains("failed"));

    // The form's token replaced, as a page elsewhere would send it.
    client
        .execute(
            &format!("document.querySelector(\"{form} input[name=csrf]\").value = 'forged';"),
            vec![],
        )
        .await
        .unwrap();
    click(client, &format!("{form} button")).await;
    element(client, "#error").await;
    assert_eq!(text_of(client, "main h1").await, "Refused");
    assert_eq!(app.delivery(delivery).await.status.as_str(), "failed");

    // The page's own form: replayed and processed.
    client
        .goto(&app.url(&format!("/console/deliveries/{delivery}")))
        .await
        .unwrap();
    click(client, &format!("{form} button")).await;
    assert_eq!(text_of(client, ".notice").await, "Replayed: ok.");
    assert!(text_of(client, "main h1").await.contains("processed"));
    screenshot(client, &format!("console-delivery-{tag}")).await;

    click(client, "nav a[href='/console/subscriptions']").await;
    element(client, "main h1").await;
    assert_eq!(text_of(client, "main h1").await, "Subscriptions");
    screenshot(client, &format!("console-subscriptions-{tag}")).await;
    click(client, "nav a[href='/console/settings']").await;
    element(client, "section.card").await;
    assert_eq!(text_of(client, "main h1").await, "Settings");
    screenshot(client, &format!("console-settings-{tag}")).await;
}

async fn sign_out(app: &TestApp, client: &Client) {
    // Signing out ends the session.
    click(client, "form.signout button").await;
    element(client, "#token").await;
    client.goto(&app.url("/console/licenses")).await.unwrap();
    element(client, "#token").await;
    assert_eq!(text_of(client, "h1").await, "Sign in");
}

/// A buyer asks for a sign-in link, opens it from the captured email,
/// sees their license, deactivates a machine, signs out, and finds the
/// used link refused, then an expired one too.
async fn a_buyer_signs_in_from_the_email_and_frees_a_machine_in_a_browser(db: Db) {
    use crate::portal::{links_sent_to, path_of, portal_app};
    let Some(app) = portal_app(db, &[]).await else {
        return;
    };
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let tag = format!("{db:?}").to_lowercase();
    let sale = with(sale_form("PORTAL-1"), "email", "buyer@example.com");
    let key = app.gumroad_sale(&sale).await.to_string();
    for (fp, name) in [("fp-browser-laptop", "Laptop"), ("fp-browser-desk", "Desk")] {
        let resp = app
            .client
            .put(app.url(&format!("/v1/licenses/{key}/machines/{fp}")))
            .json(&serde_json::json!({"name": name, "platform": "linux"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }

    // Ask for a link.
    client.goto(&app.url("/portal")).await.unwrap();
    fill(&client, "#email", "buyer@example.com").await;
    screenshot(&client, &format!("portal-sign-in-{tag}")).await;
    click(&client, "form button[type=submit]").await;
    element(&client, "#sent").await;
    assert_eq!(text_of(&client, "main h1").await, "Check your email");

    // Open it from the email the fake Postmark received.
    let link = links_sent_to(&app, "buyer@example.com")
        .await
        .pop()
        .unwrap();
    client.goto(&app.url(path_of(&link))).await.unwrap();
    click(&client, "#continue").await;
    element(&client, &format!("#license-{key}")).await;
    let card = text_of(&client, &format!("#license-{key}")).await;
    assert!(card.contains("DataTools Core"), "{card}");
    assert!(card.contains(&key), "{card}");
    assert!(card.contains("2 of 3 in use"), "{card}");
    screenshot(&client, &format!("portal-licenses-{tag}")).await;
    fits_a_phone(&client).await;
    screenshot(&client, &format!("portal-licenses-phone-{tag}")).await;
    client.set_window_size(1280, 1000).await.unwrap();

    // Deactivate the laptop.
    let laptop = app
        .scalar_text("SELECT id FROM machines WHERE name = $1", "Laptop")
        .await;
    click(&client, &format!("#machine-{laptop} button")).await;
    assert_eq!(
        text_of(&client, ".notice").await,
        "The machine is deactivated; its seat is free."
    );
    let card = text_of(&client, &format!("#license-{key}")).await;
    assert!(card.contains("1 of 3 in use"), "{card}");
    assert!(!card.contains("Laptop"), "{card}");
    assert_eq!(app.count("machines", "id", &laptop).await, 0);
    screenshot(&client, &format!("portal-deactivated-{tag}")).await;

    // Sign out; the used link is refused.
    click(&client, "form.signout button").await;
    element(&client, "#email").await;
    client.goto(&app.url(path_of(&link))).await.unwrap();
    element(&client, "#error").await;
    assert_eq!(
        text_of(&client, "main h1").await,
        "This link no longer works"
    );
    screenshot(&client, &format!("portal-link-used-{tag}")).await;

    // A fresh link whose time ran out is refused too.
    client.goto(&app.url("/portal")).await.unwrap();
    fill(&client, "#email", "buyer@example.com").await;
    click(&client, "form button[type=submit]").await;
    element(&client, "#sent").await;
    let fresh = links_sent_to(&app, "buyer@example.com")
        .await
        .pop()
        .unwrap();
    assert_ne!(fresh, link);
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query("UPDATE portal_links SET expires_at = $1 WHERE used_at IS NULL")
        .bind(keymint::store::now_ms() - 1)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    client.goto(&app.url(path_of(&fresh))).await.unwrap();
    element(&client, "#error").await;
    assert_eq!(
        text_of(&client, "main h1").await,
        "This link no longer works"
    );
    client.close().await.unwrap();
}

both_databases!(
    an_operator_signs_in_finds_a_license_and_revokes_it_in_a_browser,
    a_buyer_signs_in_from_the_email_and_frees_a_machine_in_a_browser,
);
