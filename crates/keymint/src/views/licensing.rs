//! The licensing API's answers (docs/licensing-api.md): what a buyer's
//! program reads. Fingerprints never appear here; machines are named by
//! their `mch_` id.

use super::Corrupt;
use crate::domain::{LicenseStatus, MachineId};
use crate::licensing::verdict::{Code, Warning};
use crate::store::{self, licenses::License, machines::Machine};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The license as a program sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenseFacts {
    pub key: String,
    pub product: String,
    pub tier: String,
    pub status: LicenseStatus,
    pub entitlements: Vec<String>,
    /// RFC 3339; `null` for a perpetual license.
    pub expires_at: Option<String>,
    /// The seat limit; `null` for unlimited.
    pub max_machines: Option<i64>,
    pub machines_active: i64,
}

impl LicenseFacts {
    pub fn new(l: &License, entitlements: Vec<String>, machines_active: i64) -> Self {
        Self {
            key: l.key.to_string(),
            product: l.product.clone(),
            tier: l.tier.clone(),
            status: l.status,
            entitlements,
            expires_at: l.expires_at.map(store::format_ms),
            max_machines: l.max_machines,
            machines_active,
        }
    }
}

/// The stored entitlements of a license, or the reason they cannot be
/// read (a logged 500: answering none would misstate the license).
pub fn entitlements_of(l: &License) -> Result<Vec<String>, Corrupt> {
    serde_json::from_str(&l.entitlements).map_err(|e| Corrupt {
        what: "license",
        id: l.id.to_string(),
        field: "entitlements",
        reason: e.to_string(),
    })
}

/// A machine a license is activated on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MachineOut {
    pub id: MachineId,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub hostname: Option<String>,
    pub app_version: Option<String>,
    pub activated_at: String,
    pub last_seen_at: String,
}

impl From<&Machine> for MachineOut {
    fn from(m: &Machine) -> Self {
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
            platform: m.platform.clone(),
            hostname: m.hostname.clone(),
            app_version: m.app_version.clone(),
            activated_at: store::format_ms(m.activated_at),
            last_seen_at: store::format_ms(m.last_seen_at),
        }
    }
}

/// The answer of `POST /v1/licenses/validate`: HTTP 200 for every
/// business outcome, told apart by `code`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidationOut {
    /// True with `code` `VALID` only.
    pub valid: bool,
    pub code: Code,
    /// For people; programs read `code`.
    pub detail: String,
    /// `null` when no license has the key.
    pub license: Option<LicenseFacts>,
    /// The machine the fingerprint names, when it is activated.
    pub machine: Option<MachineOut>,
    /// RFC 3339: when access ends as far as keymint knows now (a
    /// subscription's paid period plus grace, else the license's expiry);
    /// `null` for perpetual or unknown.
    pub access_until: Option<String>,
    pub warnings: Vec<Warning>,
    /// With `ENTITLEMENTS_MISSING`: the ones the license does not grant.
    pub missing_entitlements: Vec<String>,
    /// A PASETO v4.public token whose claims are this answer (`valid`,
    /// `code`, `key`, `fingerprint`, `nonce`, `iat`, `exp`).
    pub receipt: String,
}

/// The answer of an activation (201 new, 200 already active).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivationOut {
    /// True when this request added the machine.
    pub created: bool,
    pub machine: MachineOut,
    /// A PASETO v4.public token binding the license to this fingerprint
    /// until its `exp`: verify it offline.
    pub machine_file: String,
    pub license: LicenseFacts,
}

/// A license's machines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MachinesOut {
    pub machines: Vec<MachineOut>,
    /// The seat limit; `null` for unlimited.
    pub max_machines: Option<i64>,
    pub machines_active: i64,
}

impl MachinesOut {
    /// A license's machines as listed to its program, an operator or the
    /// CLI.
    pub fn new(license: &License, machines: &[Machine]) -> Self {
        Self {
            machines_active: machines.len() as i64,
            machines: machines.iter().map(MachineOut::from).collect(),
            max_machines: license.max_machines,
        }
    }
}

/// What an operator's reset did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResetOut {
    /// How many machines were deactivated.
    pub deactivated: u64,
}

/// A licensing API error: the JSON error shape with, for
/// `DEACTIVATION_LIMIT` and `rate_limited`, the seconds to wait.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicensingErrorBody {
    pub code: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}
