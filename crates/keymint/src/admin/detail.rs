//! Reading a license as operators see it: the license with its history
//! emails and machines, shared by the admin API and `keymint license show`.

use crate::store::{Store, licenses, machines, outbox};
use crate::views::{EmailOut, HistoryOut, LicenseDetail, LoadError};
use keymint_license::LicenseKey;

/// A license with its history and emails, as the API and
/// `keymint license show` give it; None when no license has that key.
pub async fn license_detail(
    store: &Store,
    key: &LicenseKey,
) -> Result<Option<LicenseDetail>, LoadError> {
    let mut conn = store.conn().await?;
    let Some(license) = licenses::by_key(&mut conn, key).await? else {
        return Ok(None);
    };
    let history: Vec<HistoryOut> = licenses::history(&mut conn, &license.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let emails: Vec<EmailOut> = outbox::for_license(&mut conn, &license.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let machines = machines::list(&mut conn, &license.id)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(Some(LicenseDetail {
        license: license.try_into()?,
        history,
        emails,
        machines,
    }))
}
