//! Group commit: concurrent writers' work gathered into one transaction,
//! so one durable commit (one fsync) serves many deliveries
//! (docs/architecture.md, "Durability and group commit").
//!
//! A caller hands [`Committer::write`] a piece of work: an async closure
//! over the writer connection, already inside a transaction. A lane takes
//! whatever work queued while its previous commit was in flight (there is
//! no delay to gather a batch), runs each piece in turn, commits once, and
//! only then answers every caller: a caller's `Ok` always means its writes
//! are durably committed.
//!
//! One piece that fails must not take the others down with it. A piece
//! that returns an error has its writes undone by rolling the batch back
//! and running the pieces before it again in a fresh transaction (work is
//! `FnMut` and must be safe to run again: nothing it did in a rolled-back
//! transaction happened). This costs nothing on the common path, where no
//! piece fails, unlike a savepoint around every piece. An error that says
//! the database is unavailable fails the whole batch at once, and a
//! deadlock or serialization failure between replicas reruns it.
//!
//! SQLite has one lane (one writer), which runs each batch on a thread of
//! its own with its own connection ([`super::lite`]), so a batch's
//! statements cost no thread hand-off each; PostgreSQL has two lanes, which
//! take from the same queue and each take a pooled connection for a batch.
//! Exactly-once still rests on the database's unique keys, never on the
//! batching.

use super::lite::LiteConn;
use super::{Backend, Conn};
use futures::FutureExt;
use sqlx::AnyPool;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};

/// A boxed future borrowing the connection.
pub type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// The most pieces of work one transaction holds; more wait for the next.
const MAX_BATCH: usize = 128;
/// How many times a batch is rerun after a deadlock or serialization
/// failure before its callers are told the database is unavailable.
const MAX_RETRIES: u32 = 3;

/// How a piece of work's error is treated by its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// This piece failed; undo its writes, keep the others.
    Own,
    /// The database cannot be used: every piece in the batch fails.
    Unavailable,
    /// A deadlock or serialization failure: run the batch again.
    Retry,
}

/// An error a piece of work can return.
pub trait WorkError: From<sqlx::Error> + Send + 'static {
    fn failure(&self) -> Failure;
}

impl WorkError for sqlx::Error {
    fn failure(&self) -> Failure {
        classify(self)
    }
}

/// Sorts a database error into the three kinds of [`Failure`].
pub fn classify(e: &sqlx::Error) -> Failure {
    if let sqlx::Error::Database(db) = e
        && matches!(db.code().as_deref(), Some("40001" | "40P01"))
    {
        return Failure::Retry;
    }
    if super::is_unavailable(e) {
        Failure::Unavailable
    } else {
        Failure::Own
    }
}

/// What a lane tells a piece of work it ran.
enum Verdict {
    Done,
    Failed(Failure),
}

/// A piece of work with its reply, its type erased for the queue.
trait Job: Send {
    fn run<'c>(&'c mut self, conn: &'c mut Conn) -> BoxFuture<'c, Verdict>;
    /// Answers the caller: with the work's own result once `committed` is
    /// `Ok`, or with the reason the batch did not commit.
    fn answer(self: Box<Self>, committed: Result<(), &str>);
}

struct Piece<F, T, E> {
    work: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for Piece<F, T, E>
where
    F: for<'c> FnMut(&'c mut Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: WorkError,
{
    fn run<'c>(&'c mut self, conn: &'c mut Conn) -> BoxFuture<'c, Verdict> {
        Box::pin(async move {
            // A piece that panics (a bug) is that piece's failure: the
            // lane, and every other writer queued on it, carries on.
            let result = match AssertUnwindSafe((self.work)(conn)).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    tracing::error!(panic = %what, "a piece of a group commit panicked");
                    Err(E::from(sqlx::Error::Protocol(format!(
                        "the write panicked: {what}"
                    ))))
                }
            };
            let verdict = match &result {
                Ok(_) => Verdict::Done,
                Err(e) => Verdict::Failed(e.failure()),
            };
            self.result = Some(result);
            verdict
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), &str>) {
        let answer = match (committed, self.result) {
            // A piece's own failure was rolled back: its error is the answer
            // whatever became of the others.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(reason), _) => Err(E::from(unavailable(reason))),
            (Ok(()), None) => Err(E::from(unavailable("the work did not run"))),
        };
        // A caller that stopped waiting (its client went away) misses only
        // the answer: the writes stand.
        let _ = self.reply.send(answer);
    }
}

/// An I/O-kind error, which [`super::is_unavailable`] reads as "retry
/// later", carrying why a batch did not commit.
fn unavailable(reason: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!(
        "the write was not committed: {reason}"
    )))
}

/// Counters a lane keeps, read by the metrics and the benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    commits: AtomicU64,
    pieces: AtomicU64,
}

impl Stats {
    /// Transactions the lanes committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    /// Pieces of work those transactions held.
    pub fn pieces(&self) -> u64 {
        self.pieces.load(Ordering::Relaxed)
    }
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Box<dyn Job>>>>;

/// Where the lanes write.
pub enum Lanes {
    /// `n` lanes, each taking a connection from the pool for a batch
    /// (PostgreSQL, and SQLite databases with no file of their own).
    Pooled(usize),
    /// One lane with its own connection to the SQLite file, running each
    /// batch on its own thread: statements run where the batch runs, with
    /// no hand-off to a driver thread per statement. The writer pool's one
    /// connection is still taken for each batch, so the lane and the
    /// store's other writes ([`super::Store::begin`]) queue in memory for
    /// the write lock instead of polling SQLite's.
    SqliteFile {
        path: PathBuf,
        busy_timeout: Duration,
    },
}

/// The handle writers queue work on; cheap to clone.
#[derive(Clone, Debug)]
pub struct Committer {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
    stats: Arc<Stats>,
}

impl Committer {
    /// Starts the lanes writing through `pool` (on the current Tokio
    /// runtime). They stop when the last handle is dropped.
    pub fn start(pool: AnyPool, backend: Backend, lanes: Lanes) -> Result<Self, sqlx::Error> {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx: Queue = Arc::new(Mutex::new(rx));
        let stats = Arc::new(Stats::default());
        // Shown on /metrics from the start, not only after the first commit.
        metrics::counter!("keymint_db_group_commits_total").increment(0);
        match lanes {
            Lanes::Pooled(n) => {
                for _ in 0..n.max(1) {
                    let lane = PooledLane {
                        pool: pool.clone(),
                        backend,
                        stats: stats.clone(),
                    };
                    tokio::spawn(lane.run(rx.clone()));
                }
            }
            Lanes::SqliteFile { path, busy_timeout } => {
                let conn = LiteConn::open(&path, busy_timeout)?;
                let (to_thread, batches) = std::sync::mpsc::channel();
                let thread_stats = stats.clone();
                std::thread::Builder::new()
                    .name("keymint-writer".into())
                    .spawn(move || write_batches(conn, path, busy_timeout, batches, thread_stats))
                    .map_err(sqlx::Error::Io)?;
                tokio::spawn(feed_thread(rx, pool, to_thread));
            }
        }
        Ok(Self { queue, stats })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Runs `work` in the next group commit and answers once that commit is
    /// durable. `work` may run more than once (see the module comment); a
    /// run whose transaction rolled back left nothing behind.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: for<'c> FnMut(&'c mut Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: WorkError,
    {
        let (reply, answer) = oneshot::channel();
        let piece = Piece {
            work,
            result: None,
            reply,
        };
        if self.queue.send(Box::new(piece)).is_err() {
            return Err(E::from(sqlx::Error::PoolClosed));
        }
        match answer.await {
            Ok(result) => result,
            // The lane went away (the runtime is shutting down).
            Err(_) => Err(E::from(sqlx::Error::PoolClosed)),
        }
    }
}

/// Takes whatever queued (at least one piece, at most [`MAX_BATCH`]);
/// `None` once every handle is gone.
async fn next_batch(queue: &Queue) -> Option<Vec<Box<dyn Job>>> {
    let mut rx = queue.lock().await;
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

struct PooledLane {
    pool: AnyPool,
    backend: Backend,
    stats: Arc<Stats>,
}

impl PooledLane {
    async fn run(self, queue: Queue) {
        while let Some(batch) = next_batch(&queue).await {
            let mut conn = match self.pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    fail_all(batch, &e.to_string());
                    continue;
                }
            };
            if commit(&mut conn, self.backend, batch, &self.stats).await == Left::Unknown {
                conn.close_on_drop();
            }
        }
    }
}

/// A batch on its way to the writer thread, and where to say it is done.
type ThreadBatch = (Vec<Box<dyn Job>>, oneshot::Sender<()>);

/// The SQLite lane's async half: gathers a batch, takes the writer pool's
/// connection (the in-process write lock), hands the batch to the thread
/// and waits for it: one hand-off per batch.
async fn feed_thread(queue: Queue, pool: AnyPool, to_thread: std::sync::mpsc::Sender<ThreadBatch>) {
    while let Some(batch) = next_batch(&queue).await {
        let lock = match pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                fail_all(batch, &e.to_string());
                continue;
            }
        };
        let (done, finished) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError((batch, _))) = to_thread.send((batch, done)) {
            fail_all(batch, "the writer thread stopped");
            continue;
        }
        // Every piece is answered by the thread whether or not this wait
        // ends normally.
        let _ = finished.await;
        drop(lock);
    }
}

/// The SQLite lane's thread: runs each batch on its own connection, on a
/// runtime of its own (the pieces' futures complete without waiting, since
/// every statement runs right here).
fn write_batches(
    mut conn: LiteConn,
    path: PathBuf,
    busy_timeout: Duration,
    batches: std::sync::mpsc::Receiver<ThreadBatch>,
    stats: Arc<Stats>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "the writer thread cannot start");
            for (batch, _) in batches {
                fail_all(batch, "the writer thread cannot start");
            }
            return;
        }
    };
    for (batch, done) in batches {
        let left = runtime.block_on(commit(&mut conn, Backend::Sqlite, batch, &stats));
        if left == Left::Unknown && !conn.is_idle() {
            // A transaction could not be ended: start again on a new
            // connection rather than write into it.
            match LiteConn::open(&path, busy_timeout) {
                Ok(fresh) => conn = fresh,
                Err(e) => tracing::error!(error = %e, "the writer cannot reopen the database"),
            }
        }
        let _ = done.send(());
    }
}

/// The state a batch left its connection in.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    Clean,
    /// A statement that ends a transaction failed: the connection may
    /// still be inside one.
    Unknown,
}

/// Runs one batch to its end on `conn`: every piece is answered.
async fn commit(
    conn: &mut Conn,
    backend: Backend,
    mut jobs: Vec<Box<dyn Job>>,
    stats: &Stats,
) -> Left {
    let mut retries = 0;
    'batch: loop {
        if jobs.is_empty() {
            return Left::Clean;
        }
        let begin = match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        if let Err(e) = sqlx::query(begin).execute(&mut *conn).await {
            fail_all(jobs, &e.to_string());
            return Left::Clean;
        }
        let mut i = 0;
        while i < jobs.len() {
            match jobs[i].run(conn).await {
                Verdict::Done => i += 1,
                Verdict::Failed(failure) => {
                    let rolled_back = rollback(conn).await;
                    match (failure, rolled_back) {
                        (Failure::Own, Ok(())) => {
                            // Answer the failed piece now (nothing of it
                            // stands) and run the rest again without it.
                            jobs.remove(i).answer(Ok(()));
                            continue 'batch;
                        }
                        (Failure::Retry, Ok(())) if retries < MAX_RETRIES => {
                            retries += 1;
                            continue 'batch;
                        }
                        (_, Err(e)) => {
                            fail_all(jobs, &e.to_string());
                            return Left::Unknown;
                        }
                        _ => {
                            let failed = jobs.remove(i);
                            failed.answer(Ok(()));
                            fail_all(jobs, "the database is unavailable");
                            return Left::Clean;
                        }
                    }
                }
            }
        }
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.pieces.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                metrics::counter!("keymint_db_group_commits_total").increment(1);
                metrics::histogram!("keymint_db_group_commit_size").record(jobs.len() as f64);
                for job in jobs {
                    job.answer(Ok(()));
                }
                return Left::Clean;
            }
            Err(e) => {
                // A failed COMMIT ends the transaction on PostgreSQL; on
                // SQLite (a busy lock) it stays open. The ROLLBACK ends it
                // either way.
                let rolled_back = rollback(conn).await;
                if classify(&e) == Failure::Retry && retries < MAX_RETRIES && rolled_back.is_ok() {
                    retries += 1;
                    continue 'batch;
                }
                fail_all(jobs, &e.to_string());
                return if rolled_back.is_ok() {
                    Left::Clean
                } else {
                    Left::Unknown
                };
            }
        }
    }
}

async fn rollback(conn: &mut Conn) -> Result<(), sqlx::Error> {
    sqlx::query("ROLLBACK").execute(conn).await.map(|_| ())
}

fn fail_all(jobs: Vec<Box<dyn Job>>, reason: &str) {
    tracing::error!(pieces = jobs.len(), reason, "a group commit failed");
    for job in jobs {
        job.answer(Err(reason));
    }
}

#[cfg(test)]
mod tests;
