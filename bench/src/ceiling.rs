//! `keymint-bench ceiling`: the SQL of one delivery (recording it, applying
//! it, and the email worker's claim and mark), run directly against the
//! database without HTTP, through keymint's own store functions and its
//! group committer: the same batched write path the server takes.

use crate::tally::Tally;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct CeilingArgs {
    /// Database URL (a fresh database: rows are added).
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Include the email worker's writes (claim, mark sent) per delivery.
    #[arg(long)]
    with_email: bool,
    /// The raw ceiling instead: the same rows through the database library
    /// alone, in batches of `--concurrency` (always with the email writes).
    #[arg(long)]
    raw: bool,
}

pub async fn ceiling(args: CeilingArgs, json: bool) -> anyhow::Result<()> {
    use keymint::domain::{DeliveryId, DeliveryStatus, Millis};
    use keymint::store::{self, Store, deliveries, outbox};
    let config = keymint::config::DatabaseConfig {
        max_connections: Some(u32::try_from(args.concurrency).unwrap_or(10)),
        ..Default::default()
    };
    let store = Store::connect(&args.database_url, &config).await?;
    if args.raw {
        // keymint's migrations make the schema; nothing else of it is used.
        store.migrate().await?;
        store.close().await;
        return crate::raw::run(&args.database_url, args.concurrency, args.duration, json).await;
    }
    let commits_before = store.commit_stats().commits();
    store.migrate().await?;
    let signer = keymint_license::SigningKey::generate();
    let token = signer.mint(&keymint_license::LicenseClaims::example())?;
    let run = ulid::Ulid::generate().to_string();
    let with_email = args.with_email;
    let counter = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (store, counter, token, run, kid) = (
            store.clone(),
            counter.clone(),
            token.clone(),
            run.clone(),
            signer.kid().to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::new();
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let order = format!("{run}-{n}");
                let started = Instant::now();
                let now = store::now_ms();
                // 1. Record the delivery (its own commit, as ingest does).
                let d = deliveries::NewDelivery {
                    id: DeliveryId::generate(),
                    endpoint: "gumroad".into(),
                    kind: "gumroad".into(),
                    received_at: Millis(now),
                    source_ip: Some("127.0.0.1".into()),
                    user_agent: Some("bench".into()),
                    request_id: Some(ulid::Ulid::generate().to_string()),
                    path: "/webhooks/gumroad?secret=***".into(),
                    headers: "{\"content-type\":\"application/x-www-form-urlencoded\"}".into(),
                    body: deliveries::StoredBody::whole(
                        format!(
                            "sale_id={order}&product_id=datatools-core&email=b@example.com&price=4900"
                        )
                        .into_bytes(),
                    ),
                    signature_valid: true,
                    status: DeliveryStatus::Received,
                    error: None,
                };
                let d = Arc::new(d);
                deliveries::record(&store, d.clone()).await?;
                // 2. Apply it in the next group commit, as the dispatcher does.
                let work = Arc::new((d.id.clone(), order, token.clone(), kid.clone()));
                store
                    .write(move |conn| {
                        let work = work.clone();
                        Box::pin(async move {
                            let (id, order, token, kid) = &*work;
                            apply(conn, id, order, token, kid, store::now_ms()).await
                        })
                    })
                    .await?;
                // 3. With --with-email, the email worker's writes too: claim
                // due rows under a lease, read their licenses, mark them sent
                // (each in the next group commit, as the worker does).
                if with_email {
                    let now = store::now_ms();
                    let claimed = outbox::claim_durably(&store, now, now + 60_000, 16).await?;
                    let done = claimed
                        .into_iter()
                        .map(|(r, _)| (r.id, outbox::Completion::Sent { message_id: None }))
                        .collect();
                    outbox::complete_durably(&store, done).await?;
                }
                t.record(started.elapsed(), "ok".into());
            }
            anyhow::Ok(t)
        }));
    }
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(&task.await??);
    }
    let commits = store.commit_stats().commits() - commits_before;
    let what = if with_email {
        "ingest and email writes"
    } else {
        "ingest writes"
    };
    let label = format!(
        "database ceiling ({}, {what}), {} connections",
        store.backend().as_str(),
        args.concurrency
    );
    tally.report(&label, args.duration, json);
    let deliveries = counter.load(Ordering::Relaxed).max(1);
    let per = commits as f64 / deliveries as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({"group_commits": commits, "commits_per_delivery": per})
        );
    } else {
        println!("group commits: {commits} ({per:.3} per delivery)");
    }
    Ok(())
}

/// The writes of applying one sale, through keymint's store functions.
async fn apply(
    conn: &mut keymint::store::Conn,
    delivery: &keymint::domain::DeliveryId,
    order: &str,
    token: &str,
    kid: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    use keymint::domain::{DeliveryStatus, EmailKind, LicenseId, LicenseStatus, Millis};
    use keymint::store::{customers, deliveries, licenses, outbox};
    deliveries::claim_event(conn, "gumroad", &format!("sale:{order}"), delivery, now).await?;
    let email = format!("buyer-{order}@example.com");
    let customer = customers::upsert_customer(conn, &email, "Bench Buyer", now).await?;
    let key = keymint_license::LicenseKey::generate("DT1", "CORE")
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let license = licenses::License {
        id: LicenseId::generate(),
        key,
        customer_id: customer,
        product: "datatools-core".into(),
        tier: "core".into(),
        status: LicenseStatus::Active,
        status_reason: None,
        source: "gumroad".into(),
        order_id: Some(order.to_string()),
        name: "Bench Buyer".into(),
        email: email.clone(),
        token: token.to_string(),
        kid: kid.to_string(),
        issued_at: Millis(now),
        expires_at: None,
        max_machines: Some(3),
        entitlements: "[\"export\"]".into(),
        amount_cents: Some(4900),
        currency: Some("USD".into()),
        test: 0,
        notes: None,
        created_at: Millis(now),
        updated_at: Millis(now),
    };
    licenses::insert(conn, &license).await?;
    licenses::record_event(
        conn,
        &license.id,
        "minted",
        None,
        LicenseStatus::Active,
        None,
        "webhook:gumroad",
        Some(delivery.as_str()),
        now,
    )
    .await?;
    outbox::enqueue(
        conn,
        &license.id,
        EmailKind::LicenseIssued,
        &format!("license_issued:{}", license.id),
        &email,
        now,
    )
    .await?;
    let outcome = deliveries::Outcome {
        status: DeliveryStatus::Processed,
        event_type: Some("sale".into()),
        event_id: Some(format!("sale:{order}")),
        order_id: Some(order.to_string()),
        error: None,
        license_id: Some(license.id.clone()),
    };
    deliveries::finish(conn, delivery, &outcome, now).await
}
