//! `keymint-bench ceiling --raw`: the rows of a delivery (its record, the
//! exactly-once claim, customer, license, history, outbox row and outcome,
//! then the email worker's claim, read and mark) written by a minimal
//! program straight through the database library, in batches of
//! `--concurrency` deliveries per transaction, every commit durable
//! (SQLite: rusqlite, WAL, `synchronous = FULL`, a statement per row, which
//! costs no round trip in process; PostgreSQL: sqlx's own driver,
//! `synchronous_commit` on, one multi-row statement per step per batch so
//! round trips do not decide the figure). No HTTP, no authentication, no
//! signing, no keymint: what the disk and the database can do, for
//! keymint's share of it.

use crate::tally::Tally;
use std::time::{Duration, Instant};

/// A batch's deliveries: (delivery id, order id, license id).
type Batch = Vec<(String, String, String)>;

fn batch(run: &str, from: u64, size: usize) -> Batch {
    (0..size as u64)
        .map(|i| {
            let n = from + i;
            (
                format!("dlv_{run}{n:012}"),
                format!("{run}-{n}"),
                format!("lic_{run}{n:012}"),
            )
        })
        .collect()
}

const TOKEN: &str = "v4.public.raw-ceiling-token";

/// The loop both backends share: the next batch until time is up, each
/// batch's time spread over its deliveries, and the report.
struct Meter {
    run: String,
    size: usize,
    next: u64,
    end: Instant,
    seconds: f64,
    started: Instant,
    tally: Tally,
}

impl Meter {
    fn new(size: usize, seconds: f64) -> Self {
        Self {
            run: ulid::Ulid::generate().to_string()[..10].to_string(),
            size,
            next: 0,
            end: Instant::now() + Duration::from_secs_f64(seconds),
            seconds,
            started: Instant::now(),
            tally: Tally::new(),
        }
    }

    /// The next batch and the time to write in it, or `None` when time is up.
    fn batch(&mut self) -> Option<(Batch, i64)> {
        if Instant::now() >= self.end {
            return None;
        }
        self.started = Instant::now();
        let rows = batch(&self.run, self.next, self.size);
        self.next += self.size as u64;
        Some((rows, crate::tally::unix_now() * 1000))
    }

    /// The batch returned by [`Meter::batch`] is written.
    fn written(&mut self) {
        let each = self.started.elapsed() / self.size as u32;
        for _ in 0..self.size {
            self.tally.record(each, "ok".into());
        }
    }

    fn report(self, what: &str, json: bool) {
        self.tally.report(
            &format!("raw ceiling ({what}, batches of {})", self.size),
            self.seconds,
            json,
        );
    }
}

/// Runs the raw ceiling on the database `url` names.
pub async fn run(url: &str, batch_size: usize, seconds: f64, json: bool) -> anyhow::Result<()> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path).to_string();
        tokio::task::spawn_blocking(move || sqlite(&path, batch_size, seconds, json)).await?
    } else {
        postgres(url, batch_size, seconds, json).await
    }
}

pub fn sqlite(path: &str, batch_size: usize, seconds: f64, json: bool) -> anyhow::Result<()> {
    let mut db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    let mut meter = Meter::new(batch_size, seconds);
    while let Some((rows, now)) = meter.batch() {
        // 1. Record the deliveries: their own commit, before any acts.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO deliveries (id, endpoint, kind, received_at, source_ip, user_agent, request_id, \
                 path, headers, body, signature_valid, status, error, attempts, body_size, body_sha256) \
                 VALUES (?1, 'gumroad', 'gumroad', ?2, '127.0.0.1', 'bench', NULL, '/webhooks/gumroad?secret=***', \
                 '{}', ?3, 1, 'received', NULL, 0, ?4, ?5)",
            )?;
            for (id, order, _) in &rows {
                let body = format!(
                    "sale_id={order}&product_id=datatools-core&email=b@example.com&price=4900"
                );
                insert.execute(rusqlite::params![
                    id,
                    now,
                    body.as_bytes(),
                    body.len() as i64,
                    "0".repeat(64)
                ])?;
            }
        }
        tx.commit()?;
        // 2. Apply them: one transaction for the batch.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (id, order, license) in &rows {
            tx.prepare_cached(
                "INSERT INTO processed_events (endpoint, event_id, delivery_id, processed_at) \
                 VALUES ('gumroad', ?1, ?2, ?3) ON CONFLICT (endpoint, event_id) DO NOTHING",
            )?
            .execute(rusqlite::params![format!("sale:{order}"), id, now])?;
            let email = format!("buyer-{order}@example.com");
            tx.prepare_cached(
                "INSERT INTO customers (id, email, name, created_at) VALUES (?1, ?2, 'Bench Buyer', ?3) \
                 ON CONFLICT (email) DO NOTHING",
            )?
            .execute(rusqlite::params![format!("cus_{order}"), email, now])?;
            let customer: String = tx
                .prepare_cached("SELECT id FROM customers WHERE email = ?1")?
                .query_row([&email], |r| r.get(0))?;
            tx.prepare_cached(
                "INSERT INTO licenses (id, key, customer_id, product, tier, status, status_reason, source, \
                 order_id, name, email, token, kid, issued_at, expires_at, max_machines, entitlements, \
                 amount_cents, currency, test, notes, created_at, updated_at) VALUES (?1, ?2, ?3, \
                 'datatools-core', 'core', 'active', NULL, 'gumroad', ?4, 'Bench Buyer', ?5, ?6, 'k4.pid.raw', \
                 ?7, NULL, 3, '[\"export\"]', 4900, 'USD', 0, NULL, ?7, ?7) \
                 ON CONFLICT (source, order_id) DO NOTHING",
            )?
            .execute(rusqlite::params![
                license,
                format!("DT1-CORE-{license}"),
                customer,
                order,
                email,
                TOKEN,
                now
            ])?;
            tx.prepare_cached(
                "INSERT INTO license_events (id, license_id, at, action, from_status, to_status, reason, \
                 actor, delivery_id) VALUES (?1, ?2, ?3, 'minted', NULL, 'active', NULL, 'webhook:gumroad', ?4)",
            )?
            .execute(rusqlite::params![format!("lev_{license}"), license, now, id])?;
            tx.prepare_cached(
                "INSERT INTO outbox (id, license_id, kind, dedupe_key, to_email, status, attempts, \
                 next_attempt_at, created_at) VALUES (?1, ?2, 'license_issued', ?3, ?4, 'pending', 0, ?5, ?5) \
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )?
            .execute(rusqlite::params![
                format!("eml_{license}"),
                license,
                format!("license_issued:{license}"),
                email,
                now
            ])?;
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'processed', event_type = 'sale', event_id = ?2, \
                 order_id = ?3, error = NULL, license_id = ?4, processed_at = ?5, attempts = attempts + 1 \
                 WHERE id = ?1",
            )?
            .execute(rusqlite::params![id, format!("sale:{order}"), order, license, now])?;
        }
        tx.commit()?;
        // 3. The email worker: claim, read the licenses, mark sent.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let claimed: Vec<(String, String)> = tx
                .prepare_cached(
                    "UPDATE outbox SET lease_until = ?2, attempts = attempts + 1 WHERE id IN (\
                     SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1 \
                     AND (lease_until IS NULL OR lease_until < ?1) ORDER BY next_attempt_at LIMIT ?3) \
                     RETURNING id, license_id",
                )?
                .query_map(
                    rusqlite::params![now, now + 60_000, batch_size as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect::<Result<_, _>>()?;
            let mut read = tx.prepare_cached("SELECT token FROM licenses WHERE id = ?1")?;
            let mut sent = tx.prepare_cached(
                "UPDATE outbox SET status = 'sent', sent_at = ?2, provider_message_id = NULL, \
                 lease_until = NULL, last_error = NULL WHERE id = ?1",
            )?;
            for (email, license) in &claimed {
                let _token: String = read.query_row([license], |r| r.get(0))?;
                sent.execute(rusqlite::params![email, now])?;
            }
        }
        tx.commit()?;
        meter.written();
    }
    meter.report("sqlite via rusqlite, synchronous=FULL", json);
    Ok(())
}

/// The same rows on PostgreSQL, through sqlx's own driver on one
/// connection: three transactions per batch, each statement one round trip.
pub async fn postgres(
    url: &str,
    batch_size: usize,
    seconds: f64,
    json: bool,
) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(url).await?;
    let mut meter = Meter::new(batch_size, seconds);
    // Each step writes its whole batch in one statement (arrays unnested
    // into rows), so the figure is PostgreSQL's and the disk's, not one
    // round trip per row.
    while let Some((rows, now)) = meter.batch() {
        let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        let orders: Vec<&str> = rows.iter().map(|(_, order, _)| order.as_str()).collect();
        let licenses: Vec<&str> = rows.iter().map(|(_, _, l)| l.as_str()).collect();
        let bodies: Vec<Vec<u8>> = orders
            .iter()
            .map(|order| {
                format!("sale_id={order}&product_id=datatools-core&email=b@example.com&price=4900")
                    .into_bytes()
            })
            .collect();
        let emails: Vec<String> = orders
            .iter()
            .map(|order| format!("buyer-{order}@example.com"))
            .collect();
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO deliveries (id, endpoint, kind, received_at, source_ip, user_agent, request_id, \
             path, headers, body, signature_valid, status, error, attempts, body_size, body_sha256) \
             SELECT id, 'gumroad', 'gumroad', $2, '127.0.0.1', 'bench', NULL, '/webhooks/gumroad?secret=***', \
             '{}', body, 1, 'received', NULL, 0, length(body), repeat('0', 64) \
             FROM UNNEST($1::text[], $3::bytea[]) AS u (id, body)",
        )
        .bind(&ids)
        .bind(now)
        .bind(&bodies)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO processed_events (endpoint, event_id, delivery_id, processed_at) \
             SELECT 'gumroad', 'sale:' || o, d, $3 FROM UNNEST($1::text[], $2::text[]) AS u (o, d) \
             ON CONFLICT (endpoint, event_id) DO NOTHING",
        )
        .bind(&orders)
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO customers (id, email, name, created_at) \
             SELECT 'cus_' || o, e, 'Bench Buyer', $3 FROM UNNEST($1::text[], $2::text[]) AS u (o, e) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(&orders)
        .bind(&emails)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO licenses (id, key, customer_id, product, tier, status, status_reason, source, \
             order_id, name, email, token, kid, issued_at, expires_at, max_machines, entitlements, \
             amount_cents, currency, test, notes, created_at, updated_at) \
             SELECT l, 'DT1-CORE-' || l, c.id, 'datatools-core', 'core', 'active', NULL, 'gumroad', o, \
             'Bench Buyer', e, $4, 'k4.pid.raw', $5, NULL, 3, '[\"export\"]', 4900, 'USD', 0, NULL, $5, $5 \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u (l, o, e) JOIN customers c ON c.email = u.e \
             ON CONFLICT (source, order_id) DO NOTHING",
        )
        .bind(&licenses)
        .bind(&orders)
        .bind(&emails)
        .bind(TOKEN)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO license_events (id, license_id, at, action, from_status, to_status, reason, \
             actor, delivery_id) SELECT 'lev_' || l, l, $3, 'minted', NULL, 'active', NULL, 'webhook:gumroad', d \
             FROM UNNEST($1::text[], $2::text[]) AS u (l, d)",
        )
        .bind(&licenses)
        .bind(&ids)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (id, license_id, kind, dedupe_key, to_email, status, attempts, \
             next_attempt_at, created_at) SELECT 'eml_' || l, l, 'license_issued', 'license_issued:' || l, e, \
             'pending', 0, $3, $3 FROM UNNEST($1::text[], $2::text[]) AS u (l, e) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(&licenses)
        .bind(&emails)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE deliveries SET status = 'processed', event_type = 'sale', event_id = 'sale:' || u.o, \
             order_id = u.o, error = NULL, license_id = u.l, processed_at = $4, attempts = attempts + 1 \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u (d, o, l) WHERE deliveries.id = u.d",
        )
        .bind(&ids)
        .bind(&orders)
        .bind(&licenses)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut tx = db.begin().await?;
        let claimed: Vec<(String, String)> = sqlx::query_as(
            "UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at LIMIT $3 \
             FOR UPDATE SKIP LOCKED) RETURNING id, license_id",
        )
        .bind(now)
        .bind(now + 60_000)
        .bind(batch_size as i64)
        .fetch_all(&mut *tx)
        .await?;
        let (sent, licensed): (Vec<String>, Vec<String>) = claimed.into_iter().unzip();
        let _tokens: Vec<String> =
            sqlx::query_scalar("SELECT token FROM licenses WHERE id = ANY($1)")
                .bind(&licensed)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $2, provider_message_id = NULL, \
             lease_until = NULL, last_error = NULL WHERE id = ANY($1)",
        )
        .bind(&sent)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        meter.written();
    }
    meter.report(
        "postgres via sqlx's driver, one statement per step per batch, synchronous commit",
        json,
    );
    Ok(())
}
