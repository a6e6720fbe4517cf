//! The SQLite group-commit lane's own connection: the store's queries run
//! through `rusqlite` on the lane's thread, with no hand-off per statement
//! (docs/architecture.md, "Durability and group commit").
//!
//! It speaks sqlx's `Any` types at its edge (arguments in, rows out), so the
//! store's functions do not know which connection they run on. Values map
//! as sqlx's SQLite driver maps them: by the stored value's type, integers
//! as 64-bit, text as UTF-8 (anything else is a decode error, never a
//! guess).

use super::Backend;
use super::conn::{DbConn, Query};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, stream};
use rusqlite::types::ValueRef;
use rusqlite::{OpenFlags, Statement};
use sqlx::Either;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx_core::any::{
    Any, AnyColumn, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo, AnyTypeInfoKind, AnyValue,
    AnyValueKind,
};
use sqlx_core::describe::Describe;
use sqlx_core::ext::ustr::UStr;
use sqlx_core::sql_str::SqlStr;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Statements kept prepared: every statement the hot writes use, with room.
const STATEMENT_CACHE: usize = 256;

/// A statement's column names, built once per statement text.
struct Shape {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

/// A SQLite connection that runs statements on the calling thread.
pub struct LiteConn {
    db: rusqlite::Connection,
    shapes: HashMap<String, Shape>,
}

impl std::fmt::Debug for LiteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteConn").finish_non_exhaustive()
    }
}

impl LiteConn {
    /// Opens the database file (which must exist) with the same settings
    /// as every other connection: WAL, `synchronous = FULL`, foreign keys,
    /// and `busy_timeout` for another process holding the write lock.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, sqlx::Error> {
        let db = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(to_sqlx)?;
        db.busy_timeout(busy_timeout).map_err(to_sqlx)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(to_sqlx)?;
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            db,
            shapes: HashMap::new(),
        })
    }

    /// True when no transaction is open (a failed batch left none behind).
    pub fn is_idle(&self) -> bool {
        self.db.is_autocommit()
    }

    /// Runs one statement to its end: its rows and how many rows it changed.
    fn run(&mut self, query: Query) -> Result<(AnyQueryResult, Vec<AnyRow>), sqlx::Error> {
        let sql = query.sql.as_str();
        let mut stmt = self.db.prepare_cached(sql).map_err(to_sqlx)?;
        let values = query.arguments.map(|a| a.values.0).unwrap_or_default();
        bind(&mut stmt, &values)?;
        if !self.shapes.contains_key(sql) {
            self.shapes.insert(sql.to_string(), shape(&stmt));
        }
        let shape = &self.shapes[sql];
        let width = shape.columns.len();
        let readonly = stmt.readonly();
        let mut out = Vec::new();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(to_sqlx)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let value = row.get_ref(i).map_err(to_sqlx)?;
                values.push(AnyValue {
                    kind: to_any(value, i)?,
                });
            }
            out.push(AnyRow {
                column_names: shape.names.clone(),
                columns: shape.columns.clone(),
                values,
            });
        }
        drop(rows);
        let result = AnyQueryResult {
            // A read changes nothing, whatever the previous write changed.
            rows_affected: if readonly { 0 } else { self.db.changes() },
            last_insert_id: None,
        };
        Ok((result, out))
    }
}

/// Binds `values` to the statement's parameters. `$n` (and `?n`) take the
/// n-th value, as with sqlx's SQLite driver; a bare `?` takes the next.
fn bind(stmt: &mut Statement<'_>, values: &[AnyValueKind]) -> Result<(), sqlx::Error> {
    for i in 1..=stmt.parameter_count() {
        let index = stmt
            .parameter_name(i)
            .and_then(|name| name.get(1..))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .unwrap_or(i - 1);
        let Some(value) = values.get(index) else {
            return Err(sqlx::Error::Protocol(format!(
                "statement parameter {i} has no argument (there are {})",
                values.len()
            )));
        };
        let bound = match value {
            AnyValueKind::Null(_) => stmt.raw_bind_parameter(i, rusqlite::types::Null),
            AnyValueKind::Bool(b) => stmt.raw_bind_parameter(i, i64::from(*b)),
            AnyValueKind::SmallInt(n) => stmt.raw_bind_parameter(i, i64::from(*n)),
            AnyValueKind::Integer(n) => stmt.raw_bind_parameter(i, i64::from(*n)),
            AnyValueKind::BigInt(n) => stmt.raw_bind_parameter(i, *n),
            AnyValueKind::Real(x) => stmt.raw_bind_parameter(i, f64::from(*x)),
            AnyValueKind::Double(x) => stmt.raw_bind_parameter(i, *x),
            AnyValueKind::Text(s) => stmt.raw_bind_parameter(i, s.as_str()),
            AnyValueKind::TextSlice(s) => stmt.raw_bind_parameter(i, &**s),
            AnyValueKind::Blob(b) => stmt.raw_bind_parameter(i, b.as_slice()),
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "argument {other:?} has no SQLite type"
                )));
            }
        };
        bound.map_err(to_sqlx)?;
    }
    Ok(())
}

fn shape(stmt: &Statement<'_>) -> Shape {
    let mut names = sqlx_core::HashMap::new();
    let columns = stmt
        .column_names()
        .into_iter()
        .enumerate()
        .map(|(ordinal, name)| {
            let name = UStr::new(name);
            names.insert(name.clone(), ordinal);
            AnyColumn {
                ordinal,
                name,
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            }
        })
        .collect();
    Shape {
        names: Arc::new(names),
        columns,
    }
}

fn to_any(value: ValueRef<'_>, column: usize) -> Result<AnyValueKind, sqlx::Error> {
    Ok(match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(n) => AnyValueKind::BigInt(n),
        ValueRef::Real(x) => AnyValueKind::Double(x),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => AnyValueKind::Text(Arc::new(text.to_string())),
            Err(e) => {
                return Err(sqlx::Error::ColumnDecode {
                    index: column.to_string(),
                    source: Box::new(e),
                });
            }
        },
        ValueRef::Blob(bytes) => AnyValueKind::Blob(Arc::new(bytes.to_vec())),
    })
}

/// A SQLite error with its extended result code, as sqlx's SQLite driver
/// reports it (so [`super::is_unavailable`] and unique-violation checks
/// read both the same way).
#[derive(Debug)]
struct LiteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for LiteError {}

impl DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(LiteError {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
}

impl DbConn for LiteConn {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn run_many(
        &mut self,
        query: Query,
    ) -> BoxStream<'_, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
        let steps: Vec<_> = match self.run(query) {
            Ok((result, rows)) => rows
                .into_iter()
                .map(|row| Ok(Either::Right(row)))
                .chain(std::iter::once(Ok(Either::Left(result))))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        stream::iter(steps).boxed()
    }

    fn run_optional(&mut self, query: Query) -> BoxFuture<'_, Result<Option<AnyRow>, sqlx::Error>> {
        let first = self.run(query).map(|(_, rows)| rows.into_iter().next());
        async move { first }.boxed()
    }

    fn prepare_dyn<'e>(
        &'e mut self,
        _sql: SqlStr,
        _parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>> {
        async { Err(not_here("preparing a statement by hand")) }.boxed()
    }

    fn describe_dyn(&mut self, _sql: SqlStr) -> BoxFuture<'_, Result<Describe<Any>, sqlx::Error>> {
        async { Err(not_here("describing a statement")) }.boxed()
    }
}

fn not_here(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("{what} is not done on the group-commit connection"))
}

#[cfg(test)]
mod tests;
