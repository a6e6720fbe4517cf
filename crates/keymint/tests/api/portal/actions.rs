//! What a signed-in buyer may do: download the license file, have it
//! emailed again, deactivate machines within the key's budget (shared
//! with the licensing API), manage a subscription; never on another
//! buyer's license, never without the session's CSRF token.

use super::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Activates `fingerprint` on `key` through the licensing API.
async fn activate(app: &TestApp, key: &str, fingerprint: &str, name: &str) {
    let resp = app
        .client
        .put(app.url(&format!("/v1/licenses/{key}/machines/{fingerprint}")))
        .json(&json!({"name": name, "platform": "linux"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

/// The id of the machine named `name` on the portal's page.
fn machine_id(page: &str, name: &str) -> String {
    let row = page
        .split("<tr id=\"machine-")
        .skip(1)
        .find(|row| row.contains(name))
        .unwrap_or_else(|| panic!("no machine {name} in {page}"));
    row.split('"').next().unwrap().to_string()
}

async fn a_buyer_downloads_resends_and_frees_machines_within_the_budget(db: Db) {
    let Some(app) = portal_app(db, &[("KEYMINT_LICENSING__DEACTIVATIONS_PER_30D", "1")]).await
    else {
        return;
    };
    let key = app.gumroad_sale(&sale_form("pa-1")).await;
    let other = app
        .gumroad_sale(&with(sale_form("pa-2"), "email", "other@example.com"))
        .await;
    activate(
        &app,
        key.as_str(),
        "fp-laptop-0001",
        "<script>alert(1)</script>",
    )
    .await;
    activate(&app, key.as_str(), "fp-desktop-0002", "desktop").await;
    let session = sign_in(&app, "jane@example.com").await;
    let (status, page) = get(&app, &session, "/portal").await;
    assert_eq!(status, 200);
    // A name the buyer's program sent is shown escaped.
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"));
    assert!(page.contains("2 of 3 in use"), "{page}");
    assert!(
        page.contains("You can deactivate 1 more machine now. Each deactivation counts for 30 days: at most 1 in any 30 days."),
        "{page}"
    );
    let csrf = hidden(&page, "csrf");

    // The license file: the token, as a download.
    let file = browser()
        .get(app.url(&format!("/portal/licenses/{key}/license.txt")))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.headers()["content-disposition"],
        "attachment; filename=\"datatools-core-license.txt\""
    );
    let token = app.stored_license(&key).await.token;
    assert_eq!(file.text().await.unwrap(), format!("{token}\n"));

    // Email me my license again: queued, sent, in the history.
    let sent_before = app.sent_emails().await.len();
    let resend = post(
        &app,
        &session,
        &format!("/portal/licenses/{key}/resend"),
        &[("csrf", &csrf)],
    )
    .await;
    // Back to the licenses, at this one: reloading repeats nothing.
    assert_eq!(resend.status(), 303);
    assert_eq!(
        resend.headers()[LOCATION],
        format!("/portal?done=resent#license-{key}").as_str()
    );
    let (_, shown) = get(&app, &session, "/portal?done=resent").await;
    assert!(
        shown.contains("is on its way to jane@example.com"),
        "{shown}"
    );
    app.send_pending_emails().await;
    let emails = app.sent_emails().await;
    assert_eq!(emails.len(), sent_before + 1);
    assert!(
        emails.last().unwrap()["TextBody"]
            .as_str()
            .unwrap()
            .contains(key.as_str())
    );
    let detail = app.admin().await.license(key.as_str()).await;
    assert!(
        detail
            .history
            .iter()
            .any(|e| e.action == "resent" && e.actor == "buyer-portal"),
        "{:?}",
        detail.history
    );

    // Deactivate one machine: within the budget, recorded, seat freed.
    let laptop = machine_id(&page, "alert(1)");
    let done = post(
        &app,
        &session,
        &format!("/portal/licenses/{key}/machines/{laptop}/deactivate"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(done.status(), 303);
    let (_, page) = get(&app, &session, "/portal?done=deactivated").await;
    assert!(page.contains("The machine is deactivated"), "{page}");
    assert!(page.contains("1 of 3 in use"));
    assert!(page.contains("You have used all 1 deactivations"), "{page}");
    assert_eq!(app.count("machines", "id", &laptop).await, 0);
    // The budget is the licensing API's: its next deactivation is refused.
    let api = app
        .client
        .delete(app.url(&format!("/v1/licenses/{key}/machines/fp-desktop-0002")))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429);
    // And the portal's too, even posted by hand.
    let desktop = machine_id(&page, "desktop");
    let over = post(
        &app,
        &session,
        &format!("/portal/licenses/{key}/machines/{desktop}/deactivate"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(over.status(), 409);
    assert!(
        over.text()
            .await
            .unwrap()
            .contains("used its 1 deactivations")
    );
    assert_eq!(app.count("machines", "id", &desktop).await, 1);

    // With another CSRF token, or none: refused, nothing done.
    let emails_before = app.sent_emails().await.len();
    for form in [&[("csrf", "nope")][..], &[][..]] {
        let path = format!("/portal/licenses/{key}/resend");
        let forged = post(&app, &session, &path, form).await;
        assert_eq!(forged.status(), 403);
        assert!(forged.text().await.unwrap().contains("Nothing was done"));
    }
    app.send_pending_emails().await;
    assert_eq!(app.sent_emails().await.len(), emails_before);
    // Another buyer's license is as unknown as no license.
    for path in [
        format!("/portal/licenses/{other}/resend"),
        format!("/portal/licenses/{other}/machines/mch_01ARZ3NDEKTSV4RRFFQ69G5FAV/deactivate"),
    ] {
        let resp = post(&app, &session, &path, &[("csrf", &csrf)]).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    let (status, _) = get(
        &app,
        &session,
        &format!("/portal/licenses/{other}/license.txt"),
    )
    .await;
    assert_eq!(status, 404);
    // Not signed in: sent to the sign-in page.
    let anonymous = browser()
        .get(app.url(&format!("/portal/licenses/{key}/license.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()[LOCATION], "/portal");
}

async fn statuses_read_in_plain_words(db: Db) {
    let Some(app) = portal_app(db, &[]).await else {
        return;
    };
    let refunded = app.gumroad_sale(&sale_form("pw-1")).await;
    let refund = with(sale_form("pw-1"), "resource_name", "refund");
    assert_eq!(app.gumroad(&refund).await.status, "ok");
    let session = sign_in(&app, "jane@example.com").await;
    let (_, page) = get(&app, &session, "/portal").await;
    assert!(page.contains("Refunded"), "{page}");
    // A revoked license offers no file and no resend.
    let file = get(
        &app,
        &session,
        &format!("/portal/licenses/{refunded}/license.txt"),
    )
    .await;
    assert_eq!(file.0, 409);
}

async fn manage_subscription_opens_stripes_billing_portal(db: Db) {
    use crate::providers::Ids;
    let api = MockServer::start().await;
    let mut env = PORTAL.to_vec();
    let uri = api.uri();
    env.extend_from_slice(&[
        ("KEYMINT_ENDPOINTS__STRIPE__API_KEY", "sk_test_keymint"),
        ("KEYMINT_ENDPOINTS__STRIPE__API_URL", uri.as_str()),
        (
            "KEYMINT_ENDPOINTS__GUMROAD__CUSTOMER_PORTAL_URL",
            "https://app.gumroad.com/library",
        ),
    ]);
    let Some(app) = spawn_app_with(db, &env).await else {
        return;
    };
    app.postmark_accepts().await;
    Mock::given(method("POST"))
        .and(path("/v1/billing_portal/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "bps_1", "url": "https://billing.stripe.com/p/session/bps_1"}),
        ))
        .mount(&api)
        .await;
    let ids = Ids::new("stripe");
    let key = app.stripe_subscription_license(&ids).await;
    let email = app.stored_license(&key).await.email;
    // A Gumroad membership: the endpoint's fixed customer portal.
    let membership = app
        .gumroad_sale(&with(
            with(
                with(
                    with(sale_form("pm-1"), "email", &email),
                    "product_id",
                    "dt-membership",
                ),
                "subscription_id",
                "gsub-1",
            ),
            "recurrence",
            "monthly",
        ))
        .await;
    let session = sign_in(&app, &email).await;
    let (_, page) = get(&app, &session, "/portal").await;
    assert!(
        page.contains(&format!("/portal/licenses/{key}/manage")),
        "{page}"
    );
    assert!(
        page.contains("href=\"https:&#x2f;&#x2f;app.gumroad.com&#x2f;library\""),
        "{page}"
    );
    assert!(page.contains(membership.as_str()));
    let csrf = hidden(&page, "csrf");
    let go = post(
        &app,
        &session,
        &format!("/portal/licenses/{key}/manage"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(go.status(), 303);
    assert_eq!(
        go.headers()[LOCATION],
        "https://billing.stripe.com/p/session/bps_1"
    );
    let call = api.received_requests().await.unwrap();
    let body = String::from_utf8(call.last().unwrap().body.clone()).unwrap();
    assert!(
        body.contains(&format!("customer={}", ids.customer)),
        "{body}"
    );
    assert!(
        body.contains("return_url=https%3A%2F%2Flicenses.example.com%2Fportal"),
        "{body}"
    );
}

both_databases!(
    a_buyer_downloads_resends_and_frees_machines_within_the_budget,
    statuses_read_in_plain_words,
    manage_subscription_opens_stripes_billing_portal,
);
