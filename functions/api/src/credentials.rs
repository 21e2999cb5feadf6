//! The credentials that sign pre-signed POST policies, from the SDK's default provider chain (the
//! function's role under Lambda), kept while they stay valid long enough.
//!
//! A pre-signed upload stops working when the credentials that signed it expire, so credentials are
//! reused only while they outlive a new upload's expiry by a minute; otherwise they are fetched
//! again. Environment credentials (Lambda's, or LocalStack's `test`) carry no expiry and are kept.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

use crate::post_policy::SigningCredentials;

/// Fetches and caches signing credentials.
#[derive(Debug)]
pub struct CredentialCache {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(SigningCredentials, Option<SystemTime>)>>,
}

impl CredentialCache {
    /// A cache over `provider`.
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            cached: Mutex::new(None),
        }
    }

    /// Credentials valid for at least `needed` from now (plus a minute), fetching if need be.
    pub async fn get(&self, needed: Duration) -> Result<SigningCredentials, String> {
        let mut cached = self.cached.lock().await;
        let fresh_until = SystemTime::now() + needed + Duration::from_secs(60);
        if let Some((credentials, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| e > fresh_until)
        {
            return Ok(credentials.clone());
        }
        let provided = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials to sign uploads with: {e}"))?;
        let credentials = SigningCredentials {
            access_key_id: provided.access_key_id().to_string(),
            secret_access_key: provided.secret_access_key().to_string(),
            session_token: provided.session_token().map(String::from),
        };
        *cached = Some((credentials.clone(), provided.expiry()));
        Ok(credentials)
    }
}
