//! The lane's connection reads and writes as sqlx's SQLite driver does:
//! the same statements, the same arguments, the same rows and errors.

use super::LiteConn;
use crate::store::Conn;
use crate::store::conn::DbConn;
use sqlx::Row;
use std::time::Duration;

struct Temp(std::path::PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        // Best effort: a left-over temporary directory harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh database file with one table, and the lane's connection to it.
fn open() -> (Temp, LiteConn) {
    let dir = std::env::temp_dir().join(format!("keymint-lite-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("db.sqlite");
    rusqlite::Connection::open(&path)
        .and_then(|db| {
            db.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, note TEXT, \
                 score REAL, raw BLOB)",
            )
        })
        .expect("create");
    let conn = LiteConn::open(&path, Duration::from_secs(1)).expect("open");
    (Temp(dir), conn)
}

#[tokio::test]
async fn numbered_arguments_bind_by_number_not_by_position() {
    let (_dir, mut lite) = open();
    let conn: &mut Conn = &mut lite;
    // $2 appears before $1, and $1 twice.
    sqlx::query("INSERT INTO t (id, name, note) VALUES ($2, $1, $1 || '!')")
        .bind("ada")
        .bind(7_i64)
        .execute(&mut *conn)
        .await
        .expect("insert");
    let row = sqlx::query("SELECT id, name, note, score, raw FROM t")
        .fetch_one(&mut *conn)
        .await
        .expect("select");
    assert_eq!(row.get::<i64, _>("id"), 7);
    assert_eq!(row.get::<String, _>("name"), "ada");
    assert_eq!(row.get::<String, _>("note"), "ada!");
    assert_eq!(row.get::<Option<f64>, _>("score"), None);
    assert_eq!(row.get::<Option<Vec<u8>>, _>("raw"), None);
}

#[tokio::test]
async fn every_argument_kind_round_trips() {
    let (_dir, mut lite) = open();
    let conn: &mut Conn = &mut lite;
    sqlx::query("INSERT INTO t (id, name, note, score, raw) VALUES ($1, $2, $3, $4, $5)")
        .bind(true)
        .bind(String::from("b"))
        .bind(None::<String>)
        .bind(2.5_f64)
        .bind(vec![0_u8, 255])
        .execute(&mut *conn)
        .await
        .expect("insert");
    let (id, score, raw): (i64, f64, Vec<u8>) =
        sqlx::query_as("SELECT id, score, raw FROM t WHERE name = $1")
            .bind("b")
            .fetch_one(&mut *conn)
            .await
            .expect("select");
    assert_eq!((id, score, raw), (1, 2.5, vec![0, 255]));
}

#[tokio::test]
async fn rows_affected_counts_writes_and_reads_change_nothing() {
    let (_dir, mut lite) = open();
    let conn: &mut Conn = &mut lite;
    for name in ["a", "b", "c"] {
        sqlx::query("INSERT INTO t (name) VALUES ($1)")
            .bind(name)
            .execute(&mut *conn)
            .await
            .expect("insert");
    }
    let updated = sqlx::query("UPDATE t SET note = 'x' WHERE name <> 'a'")
        .execute(&mut *conn)
        .await
        .expect("update");
    assert_eq!(updated.rows_affected(), 2);
    let read = sqlx::query("SELECT * FROM t")
        .execute(&mut *conn)
        .await
        .expect("read");
    assert_eq!(read.rows_affected(), 0);
    let returned: Vec<String> = sqlx::query_scalar("DELETE FROM t WHERE note = 'x' RETURNING name")
        .fetch_all(&mut *conn)
        .await
        .expect("delete");
    assert_eq!(returned.len(), 2);
    let missing = sqlx::query("SELECT * FROM t WHERE name = 'b'")
        .fetch_optional(&mut *conn)
        .await
        .expect("select");
    assert!(missing.is_none());
}

#[tokio::test]
async fn errors_read_as_the_sqlite_driver_reports_them() {
    let (_dir, mut lite) = open();
    let conn: &mut Conn = &mut lite;
    let insert = "INSERT INTO t (name) VALUES ($1)";
    sqlx::query(insert)
        .bind("a")
        .execute(&mut *conn)
        .await
        .expect("first");
    let duplicate = sqlx::query(insert)
        .bind("a")
        .execute(&mut *conn)
        .await
        .expect_err("a second row with the same name");
    assert!(crate::store::is_unique_violation(&duplicate), "{duplicate}");
    let missing_argument = sqlx::query(insert)
        .execute(&mut *conn)
        .await
        .expect_err("no argument for $1");
    assert!(
        missing_argument.to_string().contains("no argument"),
        "{missing_argument}"
    );
    let bad_sql = sqlx::query("SELEC 1")
        .execute(&mut *conn)
        .await
        .expect_err("syntax");
    assert!(matches!(bad_sql, sqlx::Error::Database(_)), "{bad_sql}");
    assert!(!crate::store::is_unavailable(&bad_sql));
}

#[tokio::test]
async fn text_that_is_not_utf8_is_a_decode_error() {
    let (_dir, mut lite) = open();
    lite.db
        .execute("INSERT INTO t (name) VALUES (CAST(x'ff00' AS TEXT))", [])
        .expect("insert");
    let conn: &mut Conn = &mut lite;
    let Err(err) = sqlx::query("SELECT name FROM t")
        .fetch_one(&mut *conn)
        .await
    else {
        panic!("text that is not UTF-8 was read");
    };
    assert!(matches!(err, sqlx::Error::ColumnDecode { .. }), "{err}");
}

#[tokio::test]
async fn transactions_end_as_asked() {
    let (_dir, mut lite) = open();
    assert!(lite.is_idle());
    let conn: &mut Conn = &mut lite;
    assert_eq!(DbConn::backend(conn), crate::store::Backend::Sqlite);
    for statement in [
        "BEGIN IMMEDIATE",
        "INSERT INTO t (name) VALUES ('gone')",
        "ROLLBACK",
    ] {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .expect(statement);
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(count, 0);
    assert!(lite.is_idle());
}
