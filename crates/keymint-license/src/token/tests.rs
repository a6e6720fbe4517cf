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
