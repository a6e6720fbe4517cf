//! The console's subscriptions and its read-only settings.

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct SubscriptionQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    before: String,
}

pub(super) async fn subscriptions_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Query(q): Query<SubscriptionQuery>,
) -> Response {
    use crate::subscriptions::Status;
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&state, &op, scope::LICENSES_READ);
    }
    let status = Status::ALL.iter().copied().find(|s| s.as_str() == q.status);
    let before = Some(q.before.trim())
        .filter(|b| crate::domain::SubscriptionId::parse(b).is_ok())
        .map(str::to_string);
    let filters = [
        ("status", q.status.trim(), status.is_some()),
        ("page", q.before.trim(), before.is_some()),
    ];
    if let Some(page) = unknown_filters(&state, &op, &filters) {
        return page;
    }
    let filter = store::subscriptions::Filter {
        status,
        endpoint: None,
        email: None,
        before,
        limit: PAGE_SIZE,
    };
    let rows = async {
        let mut conn = state.store.conn().await?;
        store::subscriptions::search(&mut conn, &filter).await
    };
    let rows = match rows.await {
        Ok(rows) => rows,
        Err(e) => return failed(&state, Some(&op), e),
    };
    let next = next_page(
        "/console/subscriptions",
        rows.len(),
        rows.last().map(|s| s.subscription.id.as_str()),
        &[("status", status.map_or("", |s| s.as_str()))],
    );
    let list: Vec<crate::views::SubscriptionOut> = rows.into_iter().map(Into::into).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    render(
        &state,
        StatusCode::OK,
        "subscriptions.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "subscriptions",
            subscriptions => Serde(&list), statuses, status => status.map(|s| s.as_str()), next,
        },
    )
}

pub(super) async fn subscription_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    Path(id): Path<String>,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&state, &op, scope::LICENSES_READ);
    }
    let found = async {
        let mut conn = state.store.conn().await?;
        let Some(row) = store::subscriptions::get(&mut conn, &id).await? else {
            return Ok(None);
        };
        let events = store::subscriptions::history(&mut conn, &row.subscription.id).await?;
        Ok::<_, sqlx::Error>(Some((row, events)))
    };
    match found.await {
        Ok(Some((row, events))) => {
            let s: crate::views::SubscriptionOut = row.into();
            let events: Vec<crate::views::SubscriptionEventOut> =
                events.into_iter().map(Into::into).collect();
            render(
                &state,
                StatusCode::OK,
                "subscription.html",
                context! {
                    operator => op.name, csrf => op.csrf, page => "subscriptions",
                    s => Serde(&s), events => Serde(&events),
                },
            )
        }
        Ok(None) => error_page(
            &state,
            Some(&op),
            StatusCode::NOT_FOUND,
            "No such subscription",
            "No subscription has that id.",
        ),
        Err(e) => failed(&state, Some(&op), e),
    }
}

/// Where this keymint is reached, as the browser reached it.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("YOUR-HOST");
    let scheme = if over_https(state, headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

pub(super) async fn settings_page(
    State(state): State<AppState>,
    Signed(op): Signed,
    headers: HeaderMap,
) -> Response {
    if !op.may(scope::LICENSES_READ) {
        return no_scope(&state, &op, scope::LICENSES_READ);
    }
    let base = origin(&state, &headers);
    let cfg = &state.config;
    let endpoints: Vec<Value> = cfg
        .endpoints
        .iter()
        .map(|e| {
            let gumroad = e.kind == crate::config::EndpointKind::Gumroad;
            context! {
                name => e.name.clone(), kind => e.kind.as_str(),
                url => format!(
                    "{base}/webhooks/{}{}",
                    e.name,
                    if gumroad { "?secret=<one of its secrets>" } else { "" }
                ),
                secrets => e.secrets.len(), api_key => e.api_key.is_some(),
            }
        })
        .collect();
    let products: Vec<Value> = cfg
        .products
        .iter()
        .map(|p| {
            let map: Vec<String> = p
                .map
                .iter()
                .map(|(endpoint, ids)| format!("{endpoint}: {}", ids.join(", ")))
                .collect();
            context! {
                id => p.id.clone(), name => p.name.clone(), tier => p.tier.to_uppercase(),
                prefix => p.key_prefix.to_uppercase(),
                lasts => if p.subscription {
                    "the paid period".to_string()
                } else {
                    match p.duration.duration() {
                        Some(d) if d.as_secs() % 86_400 == 0 => {
                            format!("{} days", d.as_secs() / 86_400)
                        }
                        Some(d) => humantime::format_duration(d).to_string(),
                        None => "forever".to_string(),
                    }
                },
                machines => p.max_machines.map_or("unlimited".to_string(), |m| m.to_string()),
                map,
            }
        })
        .collect();
    let provider = match cfg.email.provider {
        crate::config::EmailProvider::Log => "log (emails are written to the log)",
        crate::config::EmailProvider::Postmark => "postmark",
        crate::config::EmailProvider::Smtp => "smtp",
    };
    render(
        &state,
        StatusCode::OK,
        "settings.html",
        context! {
            operator => op.name, csrf => op.csrf, page => "settings",
            endpoints, products,
            email => context! { provider, from => cfg.email.from.clone() },
        },
    )
}
