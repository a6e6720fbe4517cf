//! The committer on a real SQLite file: batching, a failing piece undone
//! alone, every answer after the commit.

use super::super::Store;
use crate::config::DatabaseConfig;
use std::sync::Arc;

struct TempDb {
    dir: std::path::PathBuf,
}

impl TempDb {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("keymint-group-{name}-{}", ulid::Ulid::generate()));
        Self { dir }
    }
    fn url(&self) -> String {
        format!("sqlite://{}/db.sqlite", self.dir.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        // Best effort: a left-over temporary directory harms nothing.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn store(db: &TempDb) -> Store {
    let store = Store::connect(&db.url(), &DatabaseConfig::default())
        .await
        .expect("connect");
    sqlx::query("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        .execute(store.pool())
        .await
        .expect("create");
    store
}

async fn rows(store: &Store) -> Vec<i64> {
    sqlx::query_scalar("SELECT x FROM t ORDER BY x")
        .fetch_all(store.pool())
        .await
        .expect("select")
}

/// Queues `n` pieces while the writer connection is held elsewhere, so
/// they all wait for one batch; piece `i` inserts `i` and then fails when
/// `fails(i)`. Returns each piece's answer.
async fn queued_batch(store: &Store, n: i64, fails: fn(i64) -> bool) -> Vec<Result<i64, Chosen>> {
    queued_runs(store, n, move |i, _| {
        if fails(i) {
            Err(Chosen::Db(sqlx::Error::Protocol(format!(
                "piece {i} fails"
            ))))
        } else {
            Ok(())
        }
    })
    .await
    .into_iter()
    .map(|(answer, _)| answer)
    .collect()
}

#[tokio::test]
async fn pieces_queued_together_share_one_commit() {
    let db = TempDb::new("batch");
    let store = store(&db).await;
    let before = store.commit_stats().commits();
    let answers = queued_batch(&store, 20, |_| false).await;
    assert!(answers.iter().all(Result::is_ok));
    let commits = store.commit_stats().commits() - before;
    assert!(
        (1..=2).contains(&commits),
        "20 pieces queued behind a held writer took {commits} commits"
    );
    assert_eq!(rows(&store).await, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failing_piece_is_undone_alone() {
    let db = TempDb::new("fail");
    let store = store(&db).await;
    let fails = |i: i64| i % 5 == 2;
    let answers = queued_batch(&store, 20, fails).await;
    for (i, answer) in (0..20).zip(&answers) {
        match answer {
            Ok(v) => assert!(!fails(i) && *v == i, "piece {i} answered {v}"),
            Err(e) => assert!(fails(i), "piece {i} failed: {e:?}"),
        }
    }
    let expected: Vec<i64> = (0..20).filter(|i| !fails(*i)).collect();
    assert_eq!(rows(&store).await, expected);
}

#[tokio::test]
async fn a_piece_is_answered_only_after_its_commit() {
    let db = TempDb::new("after");
    let store = store(&db).await;
    // Each answer is checked from another connection: a piece answered
    // before its commit would not be visible there yet.
    let seen = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (store, seen) = (store.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let v: i64 = store
                .write(move |conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO t (x) VALUES ($1)")
                            .bind(i)
                            .execute(&mut *conn)
                            .await?;
                        Ok::<_, sqlx::Error>(i)
                    })
                })
                .await
                .expect("write");
            let visible: Option<i64> = sqlx::query_scalar("SELECT x FROM t WHERE x = $1")
                .bind(v)
                .fetch_optional(store.pool())
                .await
                .expect("read");
            seen.lock().await.push(visible);
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let seen = seen.lock().await;
    assert_eq!(seen.len(), 10);
    assert!(seen.iter().all(Option::is_some), "{seen:?}");
}

#[tokio::test]
async fn the_sqlite_writer_syncs_every_commit() {
    let db = TempDb::new("durable");
    let store = store(&db).await;
    let d = store.durability().await.expect("durability");
    assert!(d.durable);
    assert_eq!(d.settings["synchronous"], "full");
    assert_eq!(d.settings["journal_mode"], "wal");
}

/// An error a test piece chooses: a database error, or a deadlock.
#[derive(Debug)]
enum Chosen {
    Db(sqlx::Error),
    Deadlock,
}

impl From<sqlx::Error> for Chosen {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl super::WorkError for Chosen {
    fn failure(&self) -> super::Failure {
        match self {
            Self::Db(e) => super::classify(e),
            Self::Deadlock => super::Failure::Retry,
        }
    }
}

/// Queues `n` pieces while the writer connection is held elsewhere, so
/// they all wait for one batch (on this single-threaded runtime every
/// spawned task sends its piece before the test task runs again). Piece
/// `i` inserts `i`, and its run number `run` (from 1) then ends as
/// `outcome(i, run)` says. Returns each piece's answer and how many times
/// it ran.
async fn queued_runs(
    store: &Store,
    n: i64,
    outcome: impl Fn(i64, u32) -> Result<(), Chosen> + Copy + Send + Sync + 'static,
) -> Vec<(Result<i64, Chosen>, u32)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    let held = store.writer().await.expect("hold the writer");
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = store.clone();
        let runs = Arc::new(AtomicU32::new(0));
        tasks.push(tokio::spawn(async move {
            let counted = runs.clone();
            let answer = store
                .write(move |conn| {
                    let runs = counted.clone();
                    Box::pin(async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        sqlx::query("INSERT INTO t (x) VALUES ($1)")
                            .bind(i)
                            .execute(&mut *conn)
                            .await?;
                        outcome(i, run)?;
                        Ok(i)
                    })
                })
                .await;
            (answer, runs.load(Ordering::SeqCst))
        }));
    }
    tokio::task::yield_now().await;
    drop(held);
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

#[tokio::test]
async fn a_deadlock_runs_the_batch_again() {
    let db = TempDb::new("deadlock");
    let store = store(&db).await;
    // Piece 2 meets a deadlock on its first two runs.
    let answers = queued_runs(&store, 5, |i, run| {
        if i == 2 && run <= 2 {
            Err(Chosen::Deadlock)
        } else {
            Ok(())
        }
    })
    .await;
    for (i, (answer, runs)) in (0..5).zip(&answers) {
        assert!(matches!(answer, Ok(v) if *v == i), "piece {i}: {answer:?}");
        // Pieces up to the deadlocked one ran once per try; the rest once.
        let expected = if i <= 2 { 3 } else { 1 };
        assert_eq!(*runs, expected, "piece {i} ran {runs} times");
    }
    assert_eq!(rows(&store).await, (0..5).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_deadlock_that_persists_fails_the_batch_after_three_retries() {
    let db = TempDb::new("deadlocked");
    let store = store(&db).await;
    let answers = queued_runs(&store, 3, |i, _| {
        if i == 1 {
            Err(Chosen::Deadlock)
        } else {
            Ok(())
        }
    })
    .await;
    assert!(
        matches!(answers[1], (Err(Chosen::Deadlock), 4)),
        "{:?}",
        answers[1]
    );
    for (answer, _) in [&answers[0], &answers[2]] {
        let Err(Chosen::Db(e)) = answer else {
            panic!("a piece of a failed batch answered {answer:?}");
        };
        assert!(super::super::is_unavailable(e), "{e}");
    }
    assert!(rows(&store).await.is_empty());
}

#[tokio::test]
async fn an_unavailable_database_fails_every_piece_of_the_batch() {
    let db = TempDb::new("unavailable");
    let store = store(&db).await;
    let answers = queued_runs(&store, 4, |i, _| {
        if i == 2 {
            Err(Chosen::Db(sqlx::Error::Io(std::io::Error::other(
                "the disk went away",
            ))))
        } else {
            Ok(())
        }
    })
    .await;
    for (i, (answer, runs)) in (0..4).zip(&answers) {
        let Err(Chosen::Db(e)) = answer else {
            panic!("piece {i} answered {answer:?}");
        };
        assert!(super::super::is_unavailable(e), "piece {i}: {e}");
        // Nothing ran again: piece 3 never ran at all.
        assert_eq!(*runs, u32::from(i < 3), "piece {i} ran {runs} times");
    }
    assert!(rows(&store).await.is_empty());
}

#[tokio::test]
async fn a_license_s_emails_are_read_through_an_index() {
    use sqlx::Row;
    let db = TempDb::new("plan");
    let store = store(&db).await;
    store.migrate().await.expect("migrate");
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT * FROM outbox WHERE license_id = 'x' ORDER BY created_at, id",
    )
    .fetch_all(store.pool())
    .await
    .expect("plan")
    .iter()
    .map(|row| row.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("USING INDEX outbox_license")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_piece_that_panics_fails_alone_and_the_lane_goes_on() {
    let db = TempDb::new("panic");
    let store = store(&db).await;
    let answers = queued_runs(&store, 4, |i, _| {
        assert!(i != 1, "piece 1 meets a bug");
        Ok(())
    })
    .await;
    for (i, (answer, _)) in (0..4).zip(&answers) {
        match (i, answer) {
            (1, Err(Chosen::Db(e))) => assert!(e.to_string().contains("panicked"), "{e}"),
            (_, Ok(v)) => assert_eq!(*v, i),
            other => panic!("piece {i} answered {other:?}"),
        }
    }
    assert_eq!(rows(&store).await, vec![0, 2, 3]);
    // The lane still takes work.
    let later = queued_runs(&store, 1, |_, _| Ok(())).await;
    assert!(
        later[0].0.is_err(),
        "x = 0 exists: the insert fails on its key"
    );
}
