//! The operator console's pages without a browser: sign-in and sessions,
//! CSRF, scopes, escaping of what buyers sent, and the license actions
//! going through the same service as the admin API.

use crate::both_databases;
use crate::helpers::{Db, TestApp, sale_form, spawn_app, spawn_app_with, with};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// A client that shows redirects instead of following them.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden input `name` in a page.
pub(crate) fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

/// The `name=value` part of the `Set-Cookie` for `name`, and the whole
/// header line.
pub(crate) fn set_cookie(resp: &reqwest::Response, name: &str) -> (String, String) {
    let line = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no cookie {name}"));
    (line.split(';').next().unwrap().to_string(), line)
}

/// Signs in with `token`; the session cookie (`km_console=...`).
pub(crate) async fn signed_in(app: &TestApp, token: &str) -> String {
    let b = browser();
    let form = b.get(app.url("/console/sign-in")).send().await.unwrap();
    let (pre, _) = set_cookie(&form, "km_console_signin");
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let resp = b
        .post(app.url("/console/sign-in"))
        .header(COOKIE, pre)
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    set_cookie(&resp, "km_console").0
}

pub(crate) async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let resp = browser()
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

pub(crate) async fn post(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let resp = browser()
        .post(app.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn an_operator_signs_in_with_a_token_and_out_again(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let b = browser();
    // Not signed in: the sign-in page.
    let first = b.get(app.url("/console")).send().await.unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()[LOCATION], "/console/sign-in");

    let form = b.get(app.url("/console/sign-in")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let (pre, line) = set_cookie(&form, "km_console_signin");
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    let headers = form.headers().clone();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let token = app.admin_token("ops-alice").await;

    // A wrong token, and a right one posted without the form's cookie.
    let wrong = b
        .post(app.url("/console/sign-in"))
        .header(COOKIE, &pre)
        .form(&[("token", "kmt_not-a-token"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("not a live admin token")
    );
    let forged = b
        .post(app.url("/console/sign-in"))
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // The right token: a session cookie for /console only.
    let ok = b
        .post(app.url("/console/sign-in"))
        .header(COOKIE, &pre)
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()[LOCATION], "/console");
    let (session, line) = set_cookie(&ok, "km_console");
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    // Served over plain HTTP here: no Secure flag.
    assert!(!line.contains("Secure"), "{line}");
    // The secret is not what the database keeps.
    let secret = session.split_once('=').unwrap().1;
    assert_eq!(app.count("console_sessions", "id", secret).await, 0);

    let (status, overview) = page(&app, &session, "/console").await;
    assert_eq!(status, 200);
    assert!(
        overview.contains("Overview") && overview.contains("ops-alice"),
        "{overview}"
    );

    // Signing out needs the session's form token.
    let (status, _) = post(&app, &session, "/console/sign-out", &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
    assert_eq!(page(&app, &session, "/console").await.0, 200);
    let csrf = hidden(&overview, "csrf");
    let out = browser()
        .post(app.url("/console/sign-out"))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(set_cookie(&out, "km_console").1.contains("Max-Age=0"));
    assert_eq!(page(&app, &session, "/console").await.0, 303);

    // Revoking the token ends its sessions.
    let again = signed_in(&app, &token).await;
    assert_eq!(page(&app, &again, "/console").await.0, 200);
    let revoked = app.cli(&["admin-token", "revoke", "ops-alice"]);
    assert!(revoked.status.success());
    assert_eq!(page(&app, &again, "/console").await.0, 303);
}

async fn behind_an_https_proxy_the_session_cookie_is_secure(db: Db) {
    let Some(app) = spawn_app_with(db, &[("KEYMINT_SERVER__TRUST_FORWARDED_FOR", "true")]).await
    else {
        return;
    };
    let token = app.admin_token("ops-tls").await;
    let b = browser();
    let form = b
        .get(app.url("/console/sign-in"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let (pre, line) = set_cookie(&form, "km_console_signin");
    assert!(line.contains("Secure"), "{line}");
    let csrf = hidden(&form.text().await.unwrap(), "csrf");
    let ok = b
        .post(app.url("/console/sign-in"))
        .header("x-forwarded-proto", "https")
        .header(COOKIE, pre)
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&ok, "km_console").1.contains("Secure"));
}

async fn an_operator_finds_a_license_by_email_and_revokes_it_with_a_reason(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let sale = with(
        with(sale_form("CONSOLE-1"), "email", "findme@example.com"),
        "full_name",
        "<script>alert(1)</script> Mallory",
    );
    let key = app.gumroad_sale(&sale).await.to_string();
    let token = app.admin_token("ops-bob").await;
    let session = signed_in(&app, &token).await;

    // The overview's chart counts today's sale.
    let (status, overview) = page(&app, &session, "/console").await;
    assert_eq!(status, 200);
    assert!(overview.contains("<svg class=\"chart\""), "{overview}");
    assert!(
        overview.contains("aria-label=\"1 licenses minted from"),
        "{overview}"
    );
    assert!(overview.contains("<title>1 sold</title>"), "{overview}");

    let (status, list) = page(&app, &session, "/console/licenses?q=findme%40example.com").await;
    assert_eq!(status, 200);
    assert!(list.contains(&key), "{list}");
    let (_, none) = page(&app, &session, "/console/licenses?q=nobody-here").await;
    assert!(!none.contains(&key) && none.contains("No license matches"));

    let path = format!("/console/licenses/{key}");
    let (status, detail) = page(&app, &session, &path).await;
    assert_eq!(status, 200);
    // What the buyer sent is shown as text, never as markup.
    assert!(
        detail.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; Mallory"),
        "{detail}"
    );
    assert!(!detail.contains("<script>alert(1)"));

    // A form without the session's token changes nothing.
    let action = format!("{path}/status");
    let (status, _) = post(
        &app,
        &session,
        &action,
        &[("csrf", "forged"), ("action", "revoke"), ("reason", "x")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &app,
        &session,
        &action,
        &[("action", "revoke"), ("reason", "x")],
    )
    .await;
    assert_eq!(status, 403, "a form without the csrf field");
    let admin = app.admin().await;
    assert_eq!(admin.license(&key).await.license.status, "active");

    // No reason: refused with the rule's words.
    let csrf = hidden(&detail, "csrf");
    let (status, body) = post(
        &app,
        &session,
        &action,
        &[
            ("csrf", csrf.as_str()),
            ("action", "revoke"),
            ("reason", " "),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("a reason is required"), "{body}");

    let (status, body) = post(
        &app,
        &session,
        &action,
        &[
            ("csrf", csrf.as_str()),
            ("action", "revoke"),
            ("reason", "chargeback <b>filed</b>"),
        ],
    )
    .await;
    // Redirected to the license's page, which says what was done.
    assert_eq!(status, 303, "{body}");
    let (_, body) = page(&app, &session, &format!("{path}?done=revoked")).await;
    assert!(body.contains("Revoked."), "{body}");
    assert!(
        body.contains("chargeback &lt;b&gt;filed&lt;&#x2f;b&gt;"),
        "{body}"
    );
    // The same service as the admin API: the history names the operator.
    let detail = admin.license(&key).await;
    assert_eq!(detail.license.status, "revoked");
    let last = detail.history.last().unwrap();
    assert_eq!(last.actor, "console:ops-bob");
    assert_eq!(last.reason.as_deref(), Some("chargeback <b>filed</b>"));
}

async fn a_read_only_token_sees_no_actions_and_cannot_act(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key = app.gumroad_sale(&sale_form("CONSOLE-RO")).await.to_string();
    let token = app.scoped_token("ops-ro", "licenses:read").await;
    let session = signed_in(&app, &token).await;
    let path = format!("/console/licenses/{key}");
    let (status, detail) = page(&app, &session, &path).await;
    assert_eq!(status, 200);
    assert!(!detail.contains("/status\""), "no action form: {detail}");
    let csrf = hidden(&detail, "csrf");
    let (status, body) = post(
        &app,
        &session,
        &format!("{path}/status"),
        &[
            ("csrf", csrf.as_str()),
            ("action", "revoke"),
            ("reason", "no"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("licenses:write"), "{body}");
    assert_eq!(
        app.admin().await.license(&key).await.license.status,
        "active"
    );

    // A token without licenses:read sees no licenses.
    let none = app.scoped_token("ops-deliveries", "deliveries:read").await;
    let session = signed_in(&app, &none).await;
    assert_eq!(page(&app, &session, &path).await.0, 403);
}

async fn an_operator_replays_a_failed_delivery_and_sees_it_processed(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    // A refund that arrives before its sale fails (no license yet); its
    // body carries a buyer-controlled field with markup.
    let early = with(
        with(sale_form("CONSOLE-EARLY"), "resource_name", "refund"),
        "full_name",
        "<img src=x onerror=alert(1)>",
    );
    let refund = app.gumroad(&early).await;
    assert_eq!(refund.status, "error");
    app.post_gumroad(&sale_form("CONSOLE-EARLY")).await;
    let token = app.admin_token("ops-carol").await;
    let session = signed_in(&app, &token).await;

    let (status, list) = page(&app, &session, "/console/deliveries?status=failed").await;
    assert_eq!(status, 200);
    let id = refund.delivery_id.to_string();
    assert!(list.contains(&id), "{list}");
    // The time filter: received two days ago, it is in the last 7 days and
    // not in the last 24 hours.
    let two_days_ago = keymint::store::now_ms() - 2 * 86_400_000;
    let mut conn = app.state.store.writer().await.unwrap();
    sqlx::query("UPDATE deliveries SET received_at = $1 WHERE id = $2")
        .bind(two_days_ago)
        .bind(&id)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (_, day) = page(
        &app,
        &session,
        "/console/deliveries?status=failed&within=24h",
    )
    .await;
    assert!(!day.contains(&id), "{day}");
    assert!(day.contains("<option value=\"24h\" selected>"), "{day}");
    let (_, week) = page(
        &app,
        &session,
        "/console/deliveries?status=failed&within=7d",
    )
    .await;
    assert!(week.contains(&id), "{week}");
    let path = format!("/console/deliveries/{id}");
    let (status, detail) = page(&app, &session, &path).await;
    assert_eq!(status, 200);
    // The stored body as it came (Gumroad's is a form), shown as text;
    // the URL secret redacted.
    assert!(detail.contains("full_name=%3Cimg+src%3Dx"), "{detail}");
    assert!(detail.contains("&amp;resource_name=refund"), "{detail}");
    assert!(!detail.contains("<img src=x"));
    assert!(!detail.contains(crate::helpers::GUMROAD_SECRET), "{detail}");

    let csrf = hidden(&detail, "csrf");
    let (status, _) = post(
        &app,
        &session,
        &format!("{path}/replay"),
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, after) = post(
        &app,
        &session,
        &format!("{path}/replay"),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert!(after.contains("Replayed: ok."), "{after}");
    assert!(after.contains("processed"), "{after}");
    // The bulk replay finds nothing failed now.
    let (status, bulk) = post(
        &app,
        &session,
        "/console/deliveries/replay-failed",
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert!(bulk.contains("Replayed 0:"), "{bulk}");
}

async fn an_operator_resends_frees_machines_and_reads_subscriptions_and_settings(db: Db) {
    use crate::providers::Ids;
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key = app.gumroad_sale(&sale_form("CONSOLE-M")).await.to_string();
    // A machine activated through the licensing API.
    let activated = app
        .client
        .put(app.url(&format!("/v1/licenses/{key}/machines/machine-0001")))
        .json(&serde_json::json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();
    assert!(activated.status().is_success(), "{}", activated.status());
    // A Stripe subscription with its license.
    let ids = Ids::new("stripe");
    app.stripe_subscription_license(&ids).await;

    let token = app.admin_token("ops-dave").await;
    let session = signed_in(&app, &token).await;
    let path = format!("/console/licenses/{key}");
    let (_, detail) = page(&app, &session, &path).await;
    assert!(detail.contains("laptop"), "{detail}");
    let csrf = hidden(&detail, "csrf");

    let license_id = app.stored_license(&key.parse().unwrap()).await.id;
    let emails_before = app.count("outbox", "license_id", license_id.as_str()).await;
    let (status, body) = post(
        &app,
        &session,
        &format!("{path}/resend"),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (_, body) = page(&app, &session, &format!("{path}?done=resent")).await;
    assert!(body.contains("The email is queued."), "{body}");
    assert_eq!(
        app.count("outbox", "license_id", license_id.as_str()).await,
        emails_before + 1
    );

    let (status, body) = post(
        &app,
        &session,
        &format!("{path}/machines/reset"),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (_, body) = page(&app, &session, &format!("{path}?done=machines_reset")).await;
    assert!(body.contains("Every machine is deactivated."), "{body}");
    assert_eq!(
        app.count("machines", "license_id", license_id.as_str())
            .await,
        0
    );

    let (status, subs) = page(&app, &session, "/console/subscriptions").await;
    assert_eq!(status, 200);
    assert!(subs.contains(&ids.sub), "{subs}");
    let (status, settings) = page(&app, &session, "/console/settings").await;
    assert_eq!(status, 200);
    // (minijinja escapes `/` as `&#x2f;`.)
    assert!(
        settings.contains("&#x2f;webhooks&#x2f;stripe"),
        "{settings}"
    );
    assert!(settings.contains("365 days"), "{settings}");
    // Secrets are counted, never shown.
    assert!(
        !settings.contains(crate::helpers::GUMROAD_SECRET),
        "{settings}"
    );
}

async fn an_operator_mints_by_hand_and_a_refund_without_a_provider_api_is_refused(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let token = app.admin_token("ops-erin").await;
    let session = signed_in(&app, &token).await;
    let (_, list) = page(&app, &session, "/console/licenses").await;
    let csrf = hidden(&list, "csrf");
    let (status, body) = post(
        &app,
        &session,
        "/console/licenses/mint",
        &[
            ("csrf", csrf.as_str()),
            ("product", "datatools-pro"),
            ("email", "byhand@example.com"),
            ("name", ""),
            ("notes", "press copy"),
        ],
    )
    .await;
    // Redirected to the new license's page, so a reload mints nothing.
    assert_eq!(status, 303, "{body}");
    let admin = app.admin().await;
    let found = admin.licenses("email=byhand%40example.com").await;
    assert_eq!(found.licenses.len(), 1);
    let key = found.licenses[0].key.to_string();
    for _reload in 0..2 {
        let (status, shown) = page(
            &app,
            &session,
            &format!("/console/licenses/{key}?done=minted"),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            shown.contains("Minted, and the email is queued."),
            "{shown}"
        );
    }
    let found = admin.licenses("email=byhand%40example.com").await;
    assert_eq!(found.licenses.len(), 1);
    let minted = admin.license(&key).await;
    assert_eq!(minted.history[0].actor, "console:ops-erin");
    assert_eq!(minted.license.source, "manual");

    let (status, body) = post(
        &app,
        &session,
        "/console/licenses/mint",
        &[
            ("csrf", csrf.as_str()),
            ("product", "datatools-pro"),
            ("email", "not an email"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("not an email address"), "{body}");

    // A license of an endpoint with no refund API: its page offers no
    // refund, and one posted anyway is refused, nothing changes.
    let (_, page_of_key) = page(&app, &session, &format!("/console/licenses/{key}")).await;
    assert!(!page_of_key.contains("/refund\""), "{page_of_key}");
    let (status, body) = post(
        &app,
        &session,
        &format!("/console/licenses/{key}/refund"),
        &[("csrf", csrf.as_str()), ("amount", ""), ("reason", "asked")],
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.contains("refunds not configured"), "{body}");
    assert_eq!(admin.license(&key).await.license.status, "active");
}

both_databases!(
    an_operator_signs_in_with_a_token_and_out_again,
    behind_an_https_proxy_the_session_cookie_is_secure,
    an_operator_finds_a_license_by_email_and_revokes_it_with_a_reason,
    a_read_only_token_sees_no_actions_and_cannot_act,
    an_operator_replays_a_failed_delivery_and_sees_it_processed,
    an_operator_resends_frees_machines_and_reads_subscriptions_and_settings,
    an_operator_mints_by_hand_and_a_refund_without_a_provider_api_is_refused,
);
