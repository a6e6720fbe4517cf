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
async fn queued_batch(
    store: &Store,
    n: i64,
    fails: fn(i64) -> bool,
) -> Vec<Result<i64, sqlx::Error>> {
    let held = store.writer().await.expect("hold the writer");
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO t (x) VALUES ($1)")
                            .bind(i)
                            .execute(&mut *conn)
                            .await?;
                        if fails(i) {
                            return Err(sqlx::Error::Protocol(format!("piece {i} fails")));
                        }
                        Ok(i)
                    })
                })
                .await
        }));
    }
    // On this single-threaded runtime every spawned task sends its piece
    // before the test task runs again.
    tokio::task::yield_now().await;
    drop(held);
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
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
            Err(e) => assert!(fails(i), "piece {i} failed: {e}"),
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
