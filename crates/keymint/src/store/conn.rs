//! The connection the store's functions take: any connection that runs
//! sqlx's `Any` queries, behind one object-safe trait.
//!
//! Most connections are sqlx's own (`AnyConnection`, pooled or inside a
//! transaction). The SQLite group-commit lane runs the same queries on a
//! [`super::lite::LiteConn`] instead, which executes each statement on the
//! calling thread (docs/architecture.md, "Durability and group commit"):
//! sqlx's SQLite driver hands every statement to a worker thread and back,
//! and that hand-off, not SQLite, was most of the cost of a write.
//!
//! `&mut dyn DbConn` is a sqlx [`Executor`], so a store function is written
//! once (`query(..).fetch_one(conn)`) and runs on either.

use super::Backend;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, stream};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyConnection, Either, Execute, Executor};
use sqlx_core::describe::Describe;
use sqlx_core::sql_str::SqlStr;

/// A connection that runs the store's queries.
pub trait DbConn: Send + std::fmt::Debug {
    /// Which database it speaks.
    fn backend(&self) -> Backend;

    /// Runs one statement: its rows, then its result.
    fn run_many(
        &mut self,
        query: Query,
    ) -> BoxStream<'_, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>;

    /// Runs one statement and returns its first row, if any.
    fn run_optional(&mut self, query: Query) -> BoxFuture<'_, Result<Option<AnyRow>, sqlx::Error>>;

    /// Prepares a statement without running it.
    fn prepare_dyn<'e>(
        &'e mut self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>;

    /// Describes a statement (sqlx's offline checks; unused at run time).
    fn describe_dyn(&mut self, sql: SqlStr) -> BoxFuture<'_, Result<Describe<Any>, sqlx::Error>>;
}

/// A statement taken apart: its text, its arguments, and whether the
/// driver should cache it.
pub struct Query {
    pub sql: SqlStr,
    pub arguments: Option<AnyArguments>,
    pub persistent: bool,
}

impl Execute<'_, Any> for Query {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&AnyStatement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<AnyArguments>, sqlx::error::BoxDynError> {
        Ok(self.arguments.take())
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

impl Query {
    fn take<'q, E: Execute<'q, Any>>(mut query: E) -> Result<Self, sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        let persistent = query.persistent();
        Ok(Self {
            sql: query.sql(),
            arguments,
            persistent,
        })
    }
}

impl DbConn for AnyConnection {
    fn backend(&self) -> Backend {
        if self.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    fn run_many(
        &mut self,
        query: Query,
    ) -> BoxStream<'_, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
        self.fetch_many(query)
    }

    fn run_optional(&mut self, query: Query) -> BoxFuture<'_, Result<Option<AnyRow>, sqlx::Error>> {
        self.fetch_optional(query)
    }

    fn prepare_dyn<'e>(
        &'e mut self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>> {
        self.prepare_with(sql, parameters)
    }

    fn describe_dyn(&mut self, sql: SqlStr) -> BoxFuture<'_, Result<Describe<Any>, sqlx::Error>> {
        self.describe(sql)
    }
}

/// Pooled connections and open transactions run on the connection inside.
macro_rules! through_deref {
    ($($ty:ty),*) => {$(
        impl DbConn for $ty {
            fn backend(&self) -> Backend {
                (**self).backend()
            }
            fn run_many(&mut self, query: Query) -> BoxStream<'_, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
                (**self).run_many(query)
            }
            fn run_optional(&mut self, query: Query) -> BoxFuture<'_, Result<Option<AnyRow>, sqlx::Error>> {
                (**self).run_optional(query)
            }
            fn prepare_dyn<'e>(
                &'e mut self,
                sql: SqlStr,
                parameters: &'e [AnyTypeInfo],
            ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>> {
                (**self).prepare_dyn(sql, parameters)
            }
            fn describe_dyn(&mut self, sql: SqlStr) -> BoxFuture<'_, Result<Describe<Any>, sqlx::Error>> {
                (**self).describe_dyn(sql)
            }
        }
    )*};
}

through_deref!(
    sqlx::pool::PoolConnection<Any>,
    sqlx::Transaction<'static, Any>
);

impl<'c> Executor<'c> for &'c mut (dyn DbConn + 'static) {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match Query::take(query) {
            Ok(query) => self.run_many(query),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match Query::take(query) {
            Ok(query) => self.run_optional(query),
            Err(e) => async move { Err(e) }.boxed(),
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.prepare_dyn(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.describe_dyn(sql)
    }
}
