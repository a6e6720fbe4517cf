//! `keymint-bench ceiling`: the SQL of one delivery (recording it, applying
//! it, and the email worker's claim and mark), run directly against the
//! database without HTTP, through keymint's own store functions.

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
}

pub async fn ceiling(args: CeilingArgs, json: bool) -> anyhow::Result<()> {
    use keymint::domain::{
        DeliveryId, DeliveryStatus, EmailKind, LicenseId, LicenseStatus, Millis,
    };
    use keymint::store::{self, Store, customers, deliveries, licenses, outbox};
    let config = keymint::config::DatabaseConfig {
        max_connections: Some(u32::try_from(args.concurrency).unwrap_or(10)),
        ..Default::default()
    };
    let store = Store::connect(&args.database_url, &config).await?;
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
                deliveries::record(&store, &d).await?;
                // 2. Apply it in one transaction, as the dispatcher does.
                let mut tx = store.begin().await?;
                deliveries::claim_event(&mut tx, "gumroad", &format!("sale:{order}"), &d.id, now)
                    .await?;
                let email = format!("buyer-{order}@example.com");
                let customer =
                    customers::upsert_customer(&mut tx, &email, "Bench Buyer", now).await?;
                let license = licenses::License {
                    id: LicenseId::generate(),
                    key: keymint_license::LicenseKey::generate("DT1", "CORE")?,
                    customer_id: customer,
                    product: "datatools-core".into(),
                    tier: "core".into(),
                    status: LicenseStatus::Active,
                    status_reason: None,
                    source: "gumroad".into(),
                    order_id: Some(order.clone()),
                    name: "Bench Buyer".into(),
                    email: email.clone(),
                    token: token.clone(),
                    kid: kid.clone(),
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
                licenses::insert(&mut tx, &license).await?;
                licenses::record_event(
                    &mut tx,
                    &license.id,
                    "minted",
                    None,
                    LicenseStatus::Active,
                    None,
                    "webhook:gumroad",
                    Some(d.id.as_str()),
                    now,
                )
                .await?;
                outbox::enqueue(
                    &mut tx,
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
                    order_id: Some(order),
                    error: None,
                    license_id: Some(license.id.clone()),
                };
                deliveries::finish(&mut tx, &d.id, &outcome, now).await?;
                tx.commit().await?;
                // 3. With --with-email, the email worker's writes too: claim
                // due rows under a lease, read each license, mark each sent.
                if !with_email {
                    t.record(started.elapsed(), "ok".into());
                    continue;
                }
                let mut tx = store.begin().await?;
                let claimed =
                    outbox::claim_due(&mut tx, store.backend(), now, now + 60_000, 16).await?;
                tx.commit().await?;
                for row in claimed {
                    licenses::by_id(&mut *store.conn().await?, &row.license_id).await?;
                    outbox::mark_sent(&mut *store.writer().await?, &row.id, None, store::now_ms())
                        .await?;
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
    Ok(())
}
