//! Secrets a process reads once at start-up: given in its environment (local runs), or the name of
//! an SSM SecureString parameter read with decryption (the template's way: the webhook signing
//! secret, the variant signing keys).

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The secret itself (local runs).
    Value(String),
    /// The name of an SSM SecureString parameter, read with decryption at start-up.
    SsmParameter(String),
}

impl SecretSource {
    /// The secret: the value, or the parameter read from SSM; the reason when it cannot be read.
    pub async fn read(&self, shared: &aws_config::SdkConfig) -> Result<String, String> {
        let name = match self {
            SecretSource::Value(value) => return Ok(value.clone()),
            SecretSource::SsmParameter(name) => name,
        };
        let out = aws_sdk_ssm::Client::new(shared)
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SSM GetParameter {name}: {} (does the parameter exist, and may this role read and decrypt it?)",
                    crate::aws_error::brief(&e)
                )
            })?;
        out.parameter
            .and_then(|p| p.value)
            .ok_or_else(|| format!("SSM parameter {name} has no value"))
    }
}
