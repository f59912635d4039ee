//! Signed access tokens for client credentials (RFC 6749 §4.4): an HMAC-SHA256 over a small
//! JSON claim set, keyed by a secret kept in the data directory.

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::constant_time_eq;

/// The file the signing key is kept in, inside the data directory.
pub const TOKEN_KEY_FILE: &str = "token-key";

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `ClientApplication/{id}`
    pub subject: String,
    /// The project (tenant) id.
    pub project: String,
    /// The ProjectMembership id that grants access.
    pub membership: String,
    /// The AccessPolicy reference of the membership, if any.
    pub policy: Option<String>,
    /// Expiry, seconds since the epoch.
    pub expires: u64,
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner")
    }
}

/// Seconds since the epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// SHA-256 of a client secret, hex: what is stored instead of the secret.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn secret_matches(secret: &str, stored: &str) -> bool {
    constant_time_eq(secret_hash(secret).as_bytes(), stored.as_bytes())
}

impl TokenSigner {
    /// A key of this process only (for `--memory`).
    pub fn ephemeral() -> TokenSigner {
        TokenSigner {
            key: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()).into_bytes(),
        }
    }

    /// The key in `<data-dir>/token-key`, created (mode 0600) when missing.
    pub fn open(data_dir: &Path) -> std::io::Result<TokenSigner> {
        let path = data_dir.join(TOKEN_KEY_FILE);
        match std::fs::read(&path) {
            Ok(key) if key.len() >= 32 => return Ok(TokenSigner { key }),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        std::fs::create_dir_all(data_dir)?;
        let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()).into_bytes();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(&key)?;
                file.sync_all()?;
                Ok(TokenSigner { key })
            }
            // Another server on the same data directory wrote it first: use that one.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(TokenSigner {
                key: std::fs::read(&path)?,
            }),
            Err(error) => Err(error),
        }
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        };
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A signed token carrying `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(
            json!({
                "sub": claims.subject,
                "project": claims.project,
                "membership": claims.membership,
                "policy": claims.policy,
                "exp": claims.expires,
            })
            .to_string(),
        );
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload));
        format!("{payload}.{signature}")
    }

    /// The claims of a token this signer signed and that has not expired.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (payload, signature) = token.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if !constant_time_eq(&signature, &self.mac(payload)) {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let text = |key: &str| claims.get(key).and_then(Value::as_str).map(str::to_owned);
        let claims = Claims {
            subject: text("sub")?,
            project: text("project")?,
            membership: text("membership")?,
            policy: text("policy"),
            expires: claims.get("exp").and_then(Value::as_u64)?,
        };
        (claims.expires > now_seconds()).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner {
            key: b"0123456789abcdef0123456789abcdef".to_vec(),
        }
    }

    fn claims(expires: u64) -> Claims {
        Claims {
            subject: "ClientApplication/c".into(),
            project: "p".into(),
            membership: "m".into(),
            policy: None,
            expires,
        }
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let expires = now_seconds() + 60;
        assert_eq!(signer().verify(&signer().sign(&claims(expires))), Some(claims(expires)));
        assert!(
            signer()
                .verify(&signer().sign(&claims(now_seconds().saturating_sub(1))))
                .is_none()
        );
    }

    #[test]
    fn tampered_tokens_fail() {
        let token = signer().sign(&claims(now_seconds() + 60));
        let (payload, signature) = token.split_once('.').unwrap();
        let other =
            URL_SAFE_NO_PAD.encode(r#"{"sub":"ClientApplication/x","project":"q","membership":"m","exp":9999999999}"#);
        assert!(signer().verify(&format!("{other}.{signature}")).is_none());
        assert!(
            signer()
                .verify(&format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])))
                .is_none()
        );
        let other_key = TokenSigner {
            key: b"another key of thirty-two bytes!".to_vec(),
        };
        assert!(other_key.verify(&token).is_none());
        assert!(signer().verify("not-a-token").is_none());
    }

    #[test]
    fn secrets_are_stored_as_hashes() {
        let stored = secret_hash("s3cret");
        assert_eq!(stored.len(), 64);
        assert!(secret_matches("s3cret", &stored));
        assert!(!secret_matches("s3creT", &stored));
    }
}
