//! Unix-millisecond times as the store keeps them (`*_at` columns), with a
//! checked conversion to a calendar time: a value a calendar cannot show is
//! an error, never 1970 (docs/architecture.md, rule 8).

use time::OffsetDateTime;

/// A time as Unix milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub i64);

/// A Unix-millisecond value outside what a calendar time can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} ms is not a representable time")]
pub struct OutOfRange(pub i64);

impl Millis {
    /// The clock, read once by an operation and passed down from there.
    pub fn now() -> Self {
        // Nanoseconds since 1970 in i128 fit i64 milliseconds until the
        // year 292 million.
        Self((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub fn as_i64(self) -> i64 {
        self.0
    }

    /// The calendar time, to the millisecond.
    pub fn to_time(self) -> Result<OffsetDateTime, OutOfRange> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .map_err(|_| OutOfRange(self.0))
    }

    /// The calendar time, truncated to the second (what a token carries).
    pub fn to_time_secs(self) -> Result<OffsetDateTime, OutOfRange> {
        OffsetDateTime::from_unix_timestamp(self.0.div_euclid(1000)).map_err(|_| OutOfRange(self.0))
    }
}

impl From<i64> for Millis {
    fn from(ms: i64) -> Self {
        Self(ms)
    }
}

impl From<Millis> for i64 {
    fn from(ms: Millis) -> Self {
        ms.0
    }
}

// Stored as the i64 it wraps, through the store's `sqlx::Any` driver.
impl sqlx::Type<sqlx::Any> for Millis {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for Millis {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as sqlx::Encode<'q, sqlx::Any>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Millis {
    fn decode(
        value: <sqlx::Any as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        <i64 as sqlx::Decode<'r, sqlx::Any>>::decode(value).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrepresentable_time_is_an_error_not_1970() {
        assert_eq!(Millis(i64::MAX).to_time(), Err(OutOfRange(i64::MAX)));
        assert_eq!(Millis(i64::MIN).to_time_secs(), Err(OutOfRange(i64::MIN)));
        let t = Millis(1_750_000_000_123).to_time().unwrap();
        assert_eq!(t.unix_timestamp(), 1_750_000_000);
        assert_eq!(t.millisecond(), 123);
        assert_eq!(
            Millis(1_750_000_000_999)
                .to_time_secs()
                .unwrap()
                .unix_timestamp(),
            1_750_000_000
        );
    }
}
