//! Where the derivatives are: read from a deployed CloudFormation stack's outputs, or given directly.

/// The derivatives bucket and how its keys are laid out and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// The derivatives bucket.
    pub bucket: String,
    /// Key prefix of every output (e.g. `derived/`).
    pub prefix: String,
    /// Public base URL (the CDN), when the stack has one.
    pub cdn_base_url: Option<String>,
}

/// Reads `DerivativesBucketName`, `OutputPrefix` and `CdnBaseUrl` from stack `name`'s outputs.
pub async fn outputs(shared: &aws_config::SdkConfig, name: &str) -> Result<Outputs, String> {
    let all = all_outputs(shared, name).await?;
    Ok(Outputs {
        bucket: all
            .get("DerivativesBucketName")
            .cloned()
            .ok_or_else(|| format!("stack {name} has no DerivativesBucketName output"))?,
        prefix: all.get("OutputPrefix").cloned().unwrap_or_default(),
        cdn_base_url: all.get("CdnBaseUrl").cloned(),
    })
}

/// Every output of stack `name`, by key.
pub async fn all_outputs(
    shared: &aws_config::SdkConfig,
    name: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    let cfn = aws_sdk_cloudformation::Client::new(shared);
    let response = cfn
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "CloudFormation DescribeStacks {name}: {} (is the stack deployed in this region/account? make deploy)",
                imgpipe_cloud::aws_error::brief(&e)
            )
        })?;
    let stack = response
        .stacks()
        .first()
        .ok_or_else(|| format!("stack {name} not found"))?;
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}
