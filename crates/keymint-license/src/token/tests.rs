use super::*;
use time::Duration;

fn flip_byte(token: &str, index: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn minted_token_verifies_with_the_public_key() {
    let key = SigningKey::generate();
    let claims = LicenseClaims::example();
    let token = key.mint(&claims).unwrap();
    assert!(token.starts_with("v4.public."));
    let set = KeySet::from_paserks([key.public_paserk().as_str()]).unwrap();
    assert_eq!(set.verify(&token).unwrap(), claims);
}

#[test]
fn another_key_does_not_verify() {
    let key = SigningKey::generate();
    let other = SigningKey::generate();
    let token = key.mint(&LicenseClaims::example()).unwrap();
    let set = KeySet::from_paserks([other.public_paserk().as_str()]).unwrap();
    assert_eq!(set.verify(&token), Err(TokenError::UnknownKey));
}

#[test]
fn a_flipped_byte_does_not_verify() {
    let key = SigningKey::generate();
    let token = key.mint(&LicenseClaims::example()).unwrap();
    let set = KeySet::from_paserks([key.public_paserk().as_str()]).unwrap();
    let body_start = "v4.public.".len();
    for index in [
        body_start + 3,
        body_start + 40,
        token.rfind('.').unwrap() - 5,
    ] {
        assert!(
            set.verify(&flip_byte(&token, index)).is_err(),
            "index {index}"
        );
    }
}

#[test]
fn a_forged_kid_with_another_key_does_not_verify() {
    let real = SigningKey::generate();
    let forger = SigningKey::generate();
    let token = forger.mint(&LicenseClaims::example()).unwrap();
    let (body, _) = token.rsplit_once('.').unwrap();
    let footer = serde_json::to_vec(&Footer {
        kid: real.kid().into(),
    })
    .unwrap();
    let forged = format!("{body}.{}", pasetors_b64(&footer));
    let set = KeySet::from_paserks([real.public_paserk().as_str()]).unwrap();
    assert_eq!(set.verify(&forged), Err(TokenError::BadSignature));
}

fn pasetors_b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn expiry_and_not_before_are_enforced() {
    let key = SigningKey::generate();
    let mut claims = LicenseClaims::example();
    claims.exp = Some(claims.iat + Duration::days(30));
    let token = key.mint(&claims).unwrap();
    let set = KeySet::from_paserks([key.public_paserk().as_str()]).unwrap();
    assert!(
        set.verify_at(&token, claims.iat + Duration::days(29))
            .is_ok()
    );
    assert!(matches!(
        set.verify_at(&token, claims.iat + Duration::days(30)),
        Err(TokenError::Expired(_))
    ));
    assert!(matches!(
        set.verify_at(&token, claims.iat - Duration::seconds(1)),
        Err(TokenError::NotYetValid(_))
    ));
    assert!(set.verify_signature(&token).is_ok());
}

#[test]
fn secret_key_round_trips_through_paserk_and_hides_in_debug() {
    let key = SigningKey::generate();
    let again = SigningKey::from_paserk(&key.secret_paserk()).unwrap();
    assert_eq!(again.kid(), key.kid());
    assert!(key.kid().starts_with("k4.pid."));
    assert!(key.public_paserk().starts_with("k4.public."));
    let debug = format!("{key:?}");
    assert!(!debug.contains(&key.secret_paserk()["k4.secret.".len()..]));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_verifies_or_panics(text in "\\PC{0,300}") {
        let key = SigningKey::generate();
        let set = KeySet::from_paserks([key.public_paserk().as_str()]).unwrap();
        proptest::prop_assert!(set.verify(&text).is_err());
        let prefixed = format!("v4.public.{text}");
        proptest::prop_assert!(set.verify(&prefixed).is_err());
    }

    #[test]
    fn any_single_byte_change_is_rejected(index in 10usize..200, replacement in proptest::char::range('A', 'z')) {
        let key = SigningKey::generate();
        let token = key.mint(&LicenseClaims::example()).unwrap();
        let set = KeySet::from_paserks([key.public_paserk().as_str()]).unwrap();
        let index = index.min(token.len() - 1);
        let mut chars: Vec<char> = token.chars().collect();
        proptest::prop_assume!(chars[index] != replacement);
        chars[index] = replacement;
        let changed: String = chars.into_iter().collect();
        proptest::prop_assert!(set.verify(&changed).is_err());
    }
}

#[test]
fn garbage_is_malformed() {
    let set = KeySet::new();
    assert_eq!(set.verify("hello"), Err(TokenError::Malformed));
    assert_eq!(set.verify("v4.public.!!!"), Err(TokenError::Malformed));
}

// --- Machine files and receipts -------------------------------------------

const FINGERPRINT: &str = "3f1c0a9e5b7d";
const NONCE: &str = "n0nceN0NCEn0nceN0NCEn0nceN0NCE12";

fn machine_file_claims(now: OffsetDateTime) -> MachineFileClaims {
    let now = now.replace_nanosecond(0).unwrap();
    MachineFileClaims {
        typ: MACHINE_FILE.into(),
        iss: "keymint".into(),
        license: "lic_example".into(),
        machine: "mch_example".into(),
        key: "DT1-CORE-00000-00000-00000-00000".into(),
        fingerprint: FINGERPRINT.into(),
        product: "datatools-core".into(),
        tier: "core".into(),
        entitlements: vec!["export".into()],
        nonce: Some(NONCE.into()),
        iat: now,
        nbf: now,
        exp: now + Duration::days(7),
    }
}

fn receipt_claims(now: OffsetDateTime, nonce: Option<&str>) -> ReceiptClaims {
    let now = now.replace_nanosecond(0).unwrap();
    ReceiptClaims {
        typ: RECEIPT.into(),
        iss: "keymint".into(),
        valid: true,
        code: "VALID".into(),
        key: "DT1-CORE-00000-00000-00000-00000".into(),
        fingerprint: Some(FINGERPRINT.into()),
        nonce: nonce.map(Into::into),
        access_until: None,
        warnings: Vec::new(),
        missing_entitlements: Vec::new(),
        iat: now,
        exp: now + Duration::hours(1),
    }
}

fn set_of(key: &SigningKey) -> KeySet {
    KeySet::from_paserks([key.public_paserk().as_str()]).unwrap()
}

#[test]
fn a_machine_file_verifies_only_for_its_own_fingerprint() {
    let key = SigningKey::generate();
    let now = OffsetDateTime::now_utc();
    let claims = machine_file_claims(now);
    let file = key.sign_machine_file(&claims).unwrap();
    let set = set_of(&key);

    assert_eq!(set.verify_machine_file(&file, FINGERPRINT, now), Ok(claims));
    assert_eq!(
        set.verify_machine_file(&file, "another-machine", now),
        Err(TokenError::FingerprintMismatch)
    );
    assert_eq!(
        set.verify_machine_file(&file, "", now),
        Err(TokenError::FingerprintMismatch)
    );
}

#[test]
fn a_machine_file_is_valid_from_nbf_until_exp() {
    let key = SigningKey::generate();
    let claims = machine_file_claims(OffsetDateTime::now_utc());
    let file = key.sign_machine_file(&claims).unwrap();
    let set = set_of(&key);

    assert!(
        set.verify_machine_file(&file, FINGERPRINT, claims.nbf)
            .is_ok()
    );
    assert!(
        set.verify_machine_file(&file, FINGERPRINT, claims.exp - Duration::seconds(1))
            .is_ok()
    );
    assert!(matches!(
        set.verify_machine_file(&file, FINGERPRINT, claims.exp),
        Err(TokenError::Expired(_))
    ));
    assert!(matches!(
        set.verify_machine_file(&file, FINGERPRINT, claims.exp + Duration::days(365)),
        Err(TokenError::Expired(_))
    ));
    assert!(matches!(
        set.verify_machine_file(&file, FINGERPRINT, claims.nbf - Duration::seconds(1)),
        Err(TokenError::NotYetValid(_))
    ));
}

#[test]
fn a_machine_file_from_an_unknown_key_or_with_a_flipped_byte_does_not_verify() {
    let key = SigningKey::generate();
    let now = OffsetDateTime::now_utc();
    let file = key.sign_machine_file(&machine_file_claims(now)).unwrap();

    let other = set_of(&SigningKey::generate());
    assert_eq!(
        other.verify_machine_file(&file, FINGERPRINT, now),
        Err(TokenError::UnknownKey)
    );

    let set = set_of(&key);
    let body_start = "v4.public.".len();
    let footer_dot = file.rfind('.').unwrap();
    for index in [body_start + 3, body_start + 40, footer_dot - 5] {
        assert_eq!(
            set.verify_machine_file(&flip_byte(&file, index), FINGERPRINT, now),
            Err(TokenError::BadSignature),
            "index {index}"
        );
    }
}

#[test]
fn a_receipt_verifies_only_with_the_nonce_it_echoes() {
    let key = SigningKey::generate();
    let now = OffsetDateTime::now_utc();
    let claims = receipt_claims(now, Some(NONCE));
    let receipt = key.sign_receipt(&claims).unwrap();
    let set = set_of(&key);

    assert_eq!(set.verify_receipt(&receipt, NONCE, now), Ok(claims));
    assert_eq!(
        set.verify_receipt(&receipt, "aDifferentNonceaDifferentNonce00", now),
        Err(TokenError::NonceMismatch)
    );
    assert_eq!(
        set.verify_receipt(&receipt, &NONCE[..NONCE.len() - 1], now),
        Err(TokenError::NonceMismatch)
    );
    assert_eq!(
        set.verify_receipt(&receipt, "", now),
        Err(TokenError::NonceMismatch)
    );
}

#[test]
fn a_receipt_without_a_nonce_matches_no_nonce() {
    let key = SigningKey::generate();
    let now = OffsetDateTime::now_utc();
    let receipt = key.sign_receipt(&receipt_claims(now, None)).unwrap();
    let set = set_of(&key);

    assert_eq!(
        set.verify_receipt(&receipt, NONCE, now),
        Err(TokenError::NonceMismatch)
    );
}

#[test]
fn a_receipt_is_valid_from_iat_until_exp() {
    let key = SigningKey::generate();
    let claims = receipt_claims(OffsetDateTime::now_utc(), Some(NONCE));
    let receipt = key.sign_receipt(&claims).unwrap();
    let set = set_of(&key);

    assert!(set.verify_receipt(&receipt, NONCE, claims.iat).is_ok());
    assert!(matches!(
        set.verify_receipt(&receipt, NONCE, claims.exp),
        Err(TokenError::Expired(_))
    ));
    assert!(matches!(
        set.verify_receipt(&receipt, NONCE, claims.iat - Duration::seconds(1)),
        Err(TokenError::NotYetValid(_))
    ));
}

#[test]
fn a_receipt_from_an_unknown_key_or_with_a_flipped_byte_does_not_verify() {
    let key = SigningKey::generate();
    let now = OffsetDateTime::now_utc();
    let receipt = key.sign_receipt(&receipt_claims(now, Some(NONCE))).unwrap();

    assert_eq!(
        set_of(&SigningKey::generate()).verify_receipt(&receipt, NONCE, now),
        Err(TokenError::UnknownKey)
    );
    let flipped = flip_byte(&receipt, "v4.public.".len() + 10);
    assert_eq!(
        set_of(&key).verify_receipt(&flipped, NONCE, now),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn receipts_machine_files_and_licenses_are_not_accepted_for_one_another() {
    let key = SigningKey::generate();
    let now = OffsetDateTime::now_utc();
    let set = set_of(&key);
    let license = key.mint(&LicenseClaims::example()).unwrap();
    let receipt = key.sign_receipt(&receipt_claims(now, Some(NONCE))).unwrap();
    let file = key.sign_machine_file(&machine_file_claims(now)).unwrap();

    let wrong = |expected: &'static str, found: &str| {
        Some(TokenError::WrongKind {
            expected,
            found: found.into(),
        })
    };

    // A receipt or machine file is not a license.
    assert_eq!(
        set.verify_at(&receipt, now).err(),
        wrong("license", RECEIPT)
    );
    assert_eq!(
        set.verify_at(&file, now).err(),
        wrong("license", MACHINE_FILE)
    );
    assert_eq!(
        set.verify_signature(&file).err(),
        wrong("license", MACHINE_FILE)
    );

    // A license or receipt is not a machine file.
    assert_eq!(
        set.verify_machine_file(&license, FINGERPRINT, now).err(),
        wrong(MACHINE_FILE, "license")
    );
    assert_eq!(
        set.verify_machine_file(&receipt, FINGERPRINT, now).err(),
        wrong(MACHINE_FILE, RECEIPT)
    );

    // A license or machine file is not a receipt, even when the machine
    // file carries the very nonce asked for.
    assert_eq!(
        set.verify_receipt(&license, NONCE, now).err(),
        wrong(RECEIPT, "license")
    );
    assert_eq!(
        set.verify_receipt(&file, NONCE, now).err(),
        wrong(RECEIPT, MACHINE_FILE)
    );
}
