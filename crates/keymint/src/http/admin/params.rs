//! Reading admin requests: filter values, license keys, paging, status
//! filters, times and optional bodies, each by one rule for every resource
//! (a bad value is a 400 or 422 with its own `code`, never ignored).

use crate::http::ApiError;
use axum::http::StatusCode;

/// Page size when a list request gives none.
const DEFAULT_LIMIT: i64 = 50;
/// The largest page a list request may ask for.
const MAX_LIMIT: i64 = 500;

/// A present filter or id value: not empty, and without control
/// characters (which PostgreSQL would refuse and SQLite would store).
/// The longest text filter (a longer `LIKE` pattern is work for nothing,
/// and SQLite refuses very long ones).
pub const MOST_FILTER_CHARS: usize = 256;

pub(super) fn filter_text(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "empty_filter",
            format!("{field} must not be empty; leave it out to match everything"),
        ));
    }
    if value.chars().count() > MOST_FILTER_CHARS {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "filter_too_long",
            format!("{field} is longer than {MOST_FILTER_CHARS} characters"),
        ));
    }
    check_text(field, value)?;
    Ok(Some(value.to_string()))
}

/// Refuses an identifier with a control character (400).
pub(super) fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    crate::text::check_identifier(field, value)
        .map_err(|e| ApiError::coded(StatusCode::BAD_REQUEST, "control_character", e.to_string()))
}

/// The `{id}` of a resource's route: a control character is a 400, and
/// text that is not an id of the kind names no such `what` (404, as an
/// unknown id does).
pub(super) fn path_id<T: std::str::FromStr>(what: &'static str, id: &str) -> Result<T, ApiError> {
    check_text("id", id)?;
    id.parse().map_err(|_| ApiError::NotFound(what))
}

/// A `status` filter: absent, or one of `all` (the listed kind's stored
/// statuses, spelled by `name`); anything else is a 400 naming the choices.
pub(super) fn status_filter<S: Copy>(
    value: Option<String>,
    all: &[S],
    name: impl Fn(S) -> &'static str,
) -> Result<Option<S>, ApiError> {
    let Some(status) = filter_text("status", value)? else {
        return Ok(None);
    };
    match all.iter().find(|s| name(**s) == status) {
        Some(s) => Ok(Some(*s)),
        None => Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "bad_status",
            format!(
                "status must be one of {}",
                all.iter().map(|s| name(*s)).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The `{key}` of a license's routes, documented once for all of them.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct KeyPath {
    /// License key PREFIX-TIER-XXXXX-XXXXX-XXXXX-XXXXX (prefix and tier
    /// 1-16 letters or digits, then four groups of five Crockford base32
    /// characters; any case, O reads as 0, I and L as 1).
    pub key: String,
}

/// A license key from a path, in its canonical spelling.
pub(super) fn parse_key(key: &str) -> Result<keymint_license::LicenseKey, ApiError> {
    key.parse::<keymint_license::LicenseKey>()
        .map_err(|e| ApiError::coded(StatusCode::BAD_REQUEST, "bad_license_key", e.to_string()))
}

/// A paging cursor: an id of the listed kind (`lic_...`), as a previous
/// answer gave it.
pub(super) fn cursor(
    field: &str,
    prefix: &str,
    value: Option<String>,
) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let valid = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| ulid::Ulid::from_string(ulid).is_ok());
    if !valid {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            format!(
                "{field} must be {} {prefix}_... id as a previous answer gave it",
                crate::domain::article(prefix)
            ),
        ));
    }
    Ok(Some(value))
}

/// One page of a list, newest first: at most `limit` rows with ids before
/// `before`. Every list pages the same way: a full page has a next page,
/// which starts before its last row.
pub(super) struct Paging {
    pub before: Option<String>,
    pub limit: i64,
}

impl Paging {
    /// `prefix` is the listed kind's id prefix (`lic`, `dlv`, `sub`).
    pub fn parse(
        prefix: &str,
        before: Option<String>,
        limit: Option<i64>,
    ) -> Result<Self, ApiError> {
        let before = cursor("before", prefix, before)?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(ApiError::coded(
                    StatusCode::BAD_REQUEST,
                    "bad_limit",
                    format!("limit {n} must be between 1 and {MAX_LIMIT}"),
                ));
            }
        };
        Ok(Self { before, limit })
    }

    /// The `next_before` of a page: its last row's id when the page is full
    /// (there may be more), none when it is not.
    pub fn next<T>(&self, rows: &[T], id: impl Fn(&T) -> &str) -> Option<String> {
        (rows.len() as i64 == self.limit)
            .then(|| rows.last().map(|r| id(r).to_string()))
            .flatten()
    }
}

/// Parses RFC 3339 or a relative age like `24h` (meaning that long ago).
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    humantime::parse_duration(text)
        // An age past i64 milliseconds means "before anything was stored":
        // saturate rather than overflow.
        .map(|d| crate::store::now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor an age like 24h"))
}

/// An optional `since`/`until` time: a bad one is a 400 saying why.
pub(super) fn optional_time(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(parse_time)
        .transpose()
        .map_err(ApiError::BadRequest)
}

/// A JSON body that may be left out (no body, or only whitespace, means
/// every field's default), whatever the content type says then.
pub(super) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &axum::body::Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable(format!("invalid body: {e}")),
        _ => ApiError::BadRequest(format!("invalid JSON body: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_50_by_default_and_1_to_500_when_asked() {
        assert_eq!(Paging::parse("lic", None, None).unwrap().limit, 50);
        assert_eq!(Paging::parse("lic", None, Some(500)).unwrap().limit, 500);
        for bad in [0, -1, 501] {
            let e = Paging::parse("lic", None, Some(bad)).err().unwrap();
            assert_eq!(e.code(), "bad_limit", "{bad}");
        }
    }

    #[test]
    fn a_cursor_is_an_id_of_the_listed_kind() {
        let id = format!("dlv_{}", ulid::Ulid::generate());
        let page = Paging::parse("dlv", Some(id.clone()), None).unwrap();
        assert_eq!(page.before, Some(id.clone()));
        let e = Paging::parse("lic", Some(id), None).err().unwrap();
        assert_eq!(e.code(), "bad_cursor");
    }

    #[test]
    fn only_a_full_page_has_a_next_one() {
        let page = Paging::parse("lic", None, Some(2)).unwrap();
        let ids = ["lic_b", "lic_a"];
        assert_eq!(page.next(&ids, |s| s).as_deref(), Some("lic_a"));
        assert_eq!(page.next(&ids[..1], |s| s), None);
    }

    #[test]
    fn a_status_filter_names_the_choices() {
        use crate::domain::LicenseStatus;
        let all = [LicenseStatus::Active, LicenseStatus::Revoked];
        let filter = |text: Option<&str>| {
            status_filter(text.map(str::to_string), &all, LicenseStatus::as_str)
        };
        assert_eq!(
            filter(Some(" active ")).unwrap(),
            Some(LicenseStatus::Active)
        );
        assert_eq!(filter(None).unwrap(), None);
        let e = filter(Some("gone")).err().unwrap();
        assert_eq!(e.to_string(), "status must be one of active, revoked");
        assert_eq!(e.code(), "bad_status");
        let e = filter(Some(" ")).err().unwrap();
        assert_eq!(e.code(), "empty_filter");
    }
}
