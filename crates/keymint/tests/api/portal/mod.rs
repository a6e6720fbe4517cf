//! The buyer portal without a browser: a sign-in link by email (the same
//! answer for every address, single use, expiring, never stored), the
//! session, the buyer's licenses and nobody else's, and the limits.

use crate::both_databases;
use crate::console::{browser, hidden, set_cookie};
use crate::helpers::{Db, TestApp, sale_form, spawn_app, spawn_app_with, with};
use reqwest::header::{COOKIE, LOCATION};

mod actions;

/// The portal's settings for tests: on, with a seller and support address.
pub(crate) const PORTAL: &[(&str, &str)] = &[
    ("KEYMINT_PORTAL__ENABLED", "true"),
    ("KEYMINT_PORTAL__PUBLIC_URL", "https://licenses.example.com"),
    ("KEYMINT_PORTAL__SELLER_NAME", "Data <Tools> Inc"),
    ("KEYMINT_PORTAL__SUPPORT_EMAIL", "help@example.com"),
];

pub(crate) async fn portal_app(db: Db, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut env = PORTAL.to_vec();
    env.extend_from_slice(extra);
    let app = spawn_app_with(db, &env).await?;
    app.postmark_accepts().await;
    Some(app)
}

/// Asks for a sign-in link for `email`; the answer's status and page (the
/// page it redirects to, when it does).
pub(crate) async fn ask_for_link(app: &TestApp, email: &str) -> (u16, String) {
    let b = browser();
    let form = b.get(app.url("/portal")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let (cookie, _) = set_cookie(&form, "km_portal_form");
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let resp = b
        .post(app.url("/portal/sign-in"))
        .header(COOKIE, cookie)
        .form(&[("email", email), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    if resp.status() != 303 {
        return (resp.status().as_u16(), resp.text().await.unwrap());
    }
    assert_eq!(resp.headers()[LOCATION], "/portal/sent");
    let (asked, line) = set_cookie(&resp, "km_portal_asked");
    assert!(
        line.contains("HttpOnly") && line.contains("Path=/portal"),
        "{line}"
    );
    let sent = b
        .get(app.url("/portal/sent"))
        .header(COOKIE, asked)
        .send()
        .await
        .unwrap();
    (sent.status().as_u16(), sent.text().await.unwrap())
}

/// The sign-in links in the emails sent so far to `to`, oldest first.
pub(crate) async fn links_sent_to(app: &TestApp, to: &str) -> Vec<String> {
    app.send_pending_emails().await;
    app.sent_emails()
        .await
        .iter()
        .filter(|e| e["To"] == to && e["Subject"].as_str().unwrap().starts_with("Sign in"))
        .map(|e| {
            let text = e["TextBody"].as_str().unwrap();
            let start = text
                .find("https://licenses.example.com/portal/sign-in/")
                .unwrap_or_else(|| panic!("no link in {text}"));
            text[start..].split_whitespace().next().unwrap().to_string()
        })
        .collect()
}

/// The path of an emailed link on the test server.
pub(crate) fn path_of(link: &str) -> &str {
    link.strip_prefix("https://licenses.example.com")
        .expect("links start with portal.public_url")
}

/// Opens the link's page and presses Continue (with the page's cookie, or
/// without when `with_cookie` is false): the answer.
pub(crate) async fn use_link(app: &TestApp, link: &str, with_cookie: bool) -> reqwest::Response {
    let b = browser();
    let page = b.get(app.url(path_of(link))).send().await.unwrap();
    assert_eq!(page.status(), 200, "the link's page");
    let (cookie, _) = set_cookie(&page, "km_portal_form");
    let csrf = hidden(&page.text().await.unwrap(), "csrf");
    let mut req = b
        .post(app.url(path_of(link)))
        .form(&[("csrf", csrf.as_str())]);
    if with_cookie {
        req = req.header(COOKIE, cookie);
    }
    req.send().await.unwrap()
}

/// Signs `email` in through an emailed link; the session cookie.
pub(crate) async fn sign_in(app: &TestApp, email: &str) -> String {
    let (status, _) = ask_for_link(app, email).await;
    assert_eq!(status, 200);
    let link = links_sent_to(app, email)
        .await
        .pop()
        .expect("a link was sent");
    let resp = use_link(app, &link, true).await;
    assert_eq!(resp.status(), 303);
    set_cookie(&resp, "km_portal").0
}

/// A page as a browser with `cookie` gets it: the console tests' own.
pub(crate) use crate::console::page as get;

pub(crate) async fn post(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser()
        .post(app.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn the_portal_is_off_unless_enabled(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for path in ["/portal", "/portal/sign-in/x"] {
        let resp = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
}

async fn a_buyer_signs_in_with_an_emailed_link_and_sees_their_licenses(db: Db) {
    let Some(app) = portal_app(db, &[]).await else {
        return;
    };
    let mine = app.gumroad_sale(&sale_form("p-mine")).await;
    let theirs = app
        .gumroad_sale(&with(sale_form("p-theirs"), "email", "other@example.com"))
        .await;
    app.send_pending_emails().await;
    let sent_before = app.sent_emails().await.len();

    // The sign-in form; the answer names the address and the link's life.
    let (status, page) = ask_for_link(&app, "Jane@Example.com ").await;
    assert_eq!(status, 200);
    assert!(page.contains("a sign-in link is on its way"), "{page}");
    assert!(page.contains("15 minutes"), "{page}");
    // The seller's name is shown, escaped.
    assert!(page.contains("Data &lt;Tools&gt; Inc"), "{page}");
    assert!(page.contains("help@example.com"));

    // One email, through the outbox, with a link under portal.public_url.
    let links = links_sent_to(&app, "jane@example.com").await;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(app.sent_emails().await.len(), sent_before + 1);
    let link = &links[0];
    let token = link.rsplit('/').next().unwrap();
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'portal_link' AND to_email = $1 AND status = 'sent'", "jane@example.com").await,
        1
    );
    // The token is nowhere in the database: the link's row has its hash.
    for (table, column) in [
        ("portal_links", "token_hash"),
        ("portal_links", "id"),
        ("outbox", "dedupe_key"),
    ] {
        assert_eq!(app.count(table, column, token).await, 0, "{table}.{column}");
    }
    assert_eq!(
        app.count("portal_links", "email", "jane@example.com").await,
        1
    );

    // The link's page asks first (a mail scanner's GET uses nothing up).
    let (status, page) = get(&app, "", path_of(link)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Sign in as <strong>jane@example.com</strong>"),
        "{page}"
    );
    // Continue without the page's cookie is refused and uses nothing up.
    assert_eq!(use_link(&app, link, false).await.status(), 403);
    let ok = use_link(&app, link, true).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()[LOCATION], "/portal");
    let (session, line) = set_cookie(&ok, "km_portal");
    assert!(
        line.contains("HttpOnly")
            && line.contains("SameSite=Strict")
            && line.contains("Path=/portal"),
        "{line}"
    );
    assert_eq!(
        app.count("portal_sessions", "email", "jane@example.com")
            .await,
        1
    );

    // Signed in: the buyer's license and not the other buyer's.
    let (status, page) = get(&app, &session, "/portal").await;
    assert_eq!(status, 200);
    assert!(page.contains(mine.as_str()), "{page}");
    assert!(page.contains("DataTools Core"));
    assert!(page.contains("Active until"), "{page}");
    assert!(!page.contains(theirs.as_str()));
    let token_of_mine = app.stored_license(&mine).await.token;
    assert!(
        page.contains(&token_of_mine),
        "the license file is on the page"
    );

    // Used once: the same link is refused, on its page and on Continue.
    let (status, page) = get(&app, "", path_of(link)).await;
    assert_eq!(status, 410);
    assert!(page.contains("This link no longer works"), "{page}");
    let again = browser()
        .post(app.url(path_of(link)))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert!(matches!(again.status().as_u16(), 403 | 410));

    // Signing out ends the session.
    let csrf = hidden(&get(&app, &session, "/portal").await.1, "csrf");
    let out = post(&app, &session, "/portal/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    let (status, page) = get(&app, &session, "/portal").await;
    assert_eq!(status, 200);
    assert!(page.contains("Email me a sign-in link"), "{page}");
    assert_eq!(
        app.count("portal_sessions", "email", "jane@example.com")
            .await,
        0
    );
}

async fn every_address_gets_the_same_answer_and_only_buyers_get_mail(db: Db) {
    let Some(app) = portal_app(db, &[("KEYMINT_PORTAL__LINKS_PER_HOUR", "2")]).await else {
        return;
    };
    app.gumroad_sale(&sale_form("p-same")).await;
    let (s1, known) = ask_for_link(&app, "jane@example.com").await;
    let (s2, unknown) = ask_for_link(&app, "nobody@example.com").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        known.replace("jane@example.com", "X"),
        unknown.replace("nobody@example.com", "X"),
        "the page says nothing of whether the address bought"
    );
    assert!(links_sent_to(&app, "nobody@example.com").await.is_empty());
    assert_eq!(
        app.count("portal_links", "email", "nobody@example.com")
            .await,
        0
    );

    // Past links_per_hour: the same page, no more links.
    ask_for_link(&app, "jane@example.com").await;
    let (s3, third) = ask_for_link(&app, "jane@example.com").await;
    assert_eq!(s3, 200);
    assert_eq!(third, known);
    assert_eq!(links_sent_to(&app, "jane@example.com").await.len(), 2);

    // Not an address: said so, nothing sent.
    let (status, page) = ask_for_link(&app, "<b>not-an-email</b>").await;
    assert_eq!(status, 422);
    assert!(page.contains("That is not an email address"));
    assert!(page.contains("&lt;b&gt;not-an-email"), "escaped: {page}");
    assert!(!page.contains("<b>not-an-email"));

    // A form posted without the page's cookie is refused.
    let forged = browser()
        .post(app.url("/portal/sign-in"))
        .form(&[("email", "jane@example.com"), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(links_sent_to(&app, "jane@example.com").await.len(), 2);
}

async fn an_expired_or_unknown_link_is_refused(db: Db) {
    let Some(app) = portal_app(db, &[]).await else {
        return;
    };
    app.gumroad_sale(&sale_form("p-expired")).await;
    ask_for_link(&app, "jane@example.com").await;
    let link = links_sent_to(&app, "jane@example.com").await.pop().unwrap();
    // The link's time runs out (its end moved to the past).
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query("UPDATE portal_links SET expires_at = $1 WHERE email = $2")
        .bind(keymint::store::now_ms() - 1)
        .bind("jane@example.com")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (status, page) = get(&app, "", path_of(&link)).await;
    assert_eq!(status, 410);
    assert!(page.contains("Ask for a new sign-in link"), "{page}");

    // A link whose time ran out before its email went is not sent: the
    // email is dead, saying why.
    ask_for_link(&app, "jane@example.com").await;
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query("UPDATE portal_links SET expires_at = $1 WHERE used_at IS NULL")
        .bind(keymint::store::now_ms() - 1)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(links_sent_to(&app, "jane@example.com").await.len(), 1);
    assert_eq!(
        app.scalar_text(
            "SELECT last_error FROM outbox WHERE kind = 'portal_link' AND status = $1",
            "dead"
        )
        .await,
        "the sign-in link expired before it could be sent"
    );
    // Unknown and malformed tokens alike.
    for path in [
        "/portal/sign-in/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/portal/sign-in/short",
        "/portal/sign-in/%3Cscript%3E",
    ] {
        let (status, _) = get(&app, "", path).await;
        assert_eq!(status, 410, "{path}");
    }
    // A made-up session cookie is not a session.
    let (status, page) = get(
        &app,
        "km_portal=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/portal",
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("Email me a sign-in link"));
}

/// Eight tabs press Continue on one link at once: one signs in.
async fn a_link_signs_in_once_however_many_use_it_at_once(db: Db) {
    let Some(app) = portal_app(db, &[("KEYMINT_PORTAL__PER_MINUTE", "1000")]).await else {
        return;
    };
    app.gumroad_sale(&sale_form("p-race")).await;
    ask_for_link(&app, "jane@example.com").await;
    let link = links_sent_to(&app, "jane@example.com").await.pop().unwrap();
    let page = browser().get(app.url(path_of(&link))).send().await.unwrap();
    let (cookie, _) = set_cookie(&page, "km_portal_form");
    let csrf = hidden(&page.text().await.unwrap(), "csrf");
    let presses = (0..8).map(|_| {
        browser()
            .post(app.url(path_of(&link)))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
    });
    let mut statuses: Vec<u16> = futures::future::join_all(presses)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 410, 410, 410, 410, 410, 410, 410]);
    assert_eq!(
        app.count("portal_sessions", "email", "jane@example.com")
            .await,
        1
    );
}

async fn sign_in_requests_are_limited_per_client_address(db: Db) {
    let Some(app) = portal_app(db, &[("KEYMINT_PORTAL__PER_MINUTE", "3")]).await else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(ask_for_link(&app, &format!("n{i}@example.com")).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let resp = browser()
        .get(app.url("/portal/sign-in/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
}

/// Pages and the link email are replaced by files of the same name in the
/// templates directory; the others stay the defaults.
async fn pages_and_the_link_email_take_the_sellers_templates(db: Db) {
    let dir = std::env::temp_dir().join(format!("keymint-pages-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(dir.join("portal")).unwrap();
    std::fs::create_dir_all(dir.join("console")).unwrap();
    std::fs::write(
        dir.join("portal/sign_in.html"),
        "{% extends \"base.html\" %}{% block main %}<p id=\"custom\">Welcome to {{ seller }}</p>\
         <form method=\"post\" action=\"/portal/sign-in\"><input type=\"hidden\" name=\"csrf\" value=\"{{ form_csrf }}\">\
         <input name=\"email\"></form>{% endblock %}",
    )
    .unwrap();
    std::fs::write(dir.join("console/sign_in.html"), "<p>our console</p>").unwrap();
    std::fs::write(
        dir.join("portal_link.subject.txt"),
        "Your way in, {{ email }}",
    )
    .unwrap();
    let templates = dir.display().to_string();
    let Some(app) = portal_app(db, &[("KEYMINT_EMAIL__TEMPLATES_DIR", &templates)]).await else {
        return;
    };
    let (_, page) = get(&app, "", "/portal").await;
    assert!(
        page.contains("<p id=\"custom\">Welcome to Data &lt;Tools&gt; Inc</p>"),
        "{page}"
    );
    let (_, console) = get(&app, "", "/console/sign-in").await;
    assert_eq!(console, "<p>our console</p>");
    app.gumroad_sale(&sale_form("p-tpl")).await;
    let (status, _) = ask_for_link(&app, "jane@example.com").await;
    assert_eq!(status, 200);
    app.send_pending_emails().await;
    let emails = app.sent_emails().await;
    assert!(
        emails
            .iter()
            .any(|e| e["Subject"] == "Your way in, jane@example.com"),
        "{emails:?}"
    );
    // A page override that does not parse: check-config says which.
    std::fs::write(dir.join("console/settings.html"), "{% if %}").unwrap();
    let out = crate::helpers::keymint_cli(
        &app.config_path,
        &["check-config"],
        &[("KEYMINT_EMAIL__TEMPLATES_DIR", &templates)],
    );
    assert!(!out.status.success());
    let said = crate::helpers::stderr(&out);
    assert!(said.contains("console/settings.html"), "{said}");
}

both_databases!(
    pages_and_the_link_email_take_the_sellers_templates,
    the_portal_is_off_unless_enabled,
    a_buyer_signs_in_with_an_emailed_link_and_sees_their_licenses,
    every_address_gets_the_same_answer_and_only_buyers_get_mail,
    an_expired_or_unknown_link_is_refused,
    a_link_signs_in_once_however_many_use_it_at_once,
    sign_in_requests_are_limited_per_client_address,
);
