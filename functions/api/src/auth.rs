//! Who is calling: a caller counts as authenticated only when API Gateway says so.
//!
//! Under Lambda, `lambda_http` puts the API Gateway request context into the request's extensions;
//! with a JWT authorizer (`JwtIssuer`) it carries the token's verified claims, with IAM
//! authorization the signer. A client cannot forge that context with a header: it is not built
//! from the HTTP request. The local server (`api --listen`) has no such context, so every caller
//! there is anonymous, and so is every caller of a stack deployed without an authorizer.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lambda_http::request::RequestContext;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody vouched for the caller.
    Anonymous,
    /// API Gateway verified a JWT (its `sub`, when present) or an IAM signature.
    Authenticated {
        /// The token's `sub` claim, or the IAM user ARN.
        subject: Option<String>,
    },
}

impl Caller {
    /// True for [`Caller::Authenticated`].
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Caller::Authenticated { .. })
    }

    /// The caller as API Gateway's request context describes it.
    pub fn from_context(context: Option<&RequestContext>) -> Self {
        let Some(RequestContext::ApiGatewayV2(context)) = context else {
            return Caller::Anonymous;
        };
        let Some(authorizer) = &context.authorizer else {
            return Caller::Anonymous;
        };
        if let Some(jwt) = &authorizer.jwt
            && !jwt.claims.is_empty()
        {
            return Caller::Authenticated {
                subject: jwt.claims.get("sub").cloned(),
            };
        }
        if let Some(iam) = &authorizer.iam {
            return Caller::Authenticated {
                subject: iam.user_arn.clone(),
            };
        }
        Caller::Anonymous
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller::from_context(
            parts.extensions.get::<RequestContext>(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

    fn context(authorizer: serde_json::Value) -> RequestContext {
        let mut value = serde_json::json!({
            "accountId": "123456789012", "apiId": "api", "requestId": "r-1", "stage": "$default",
            "http": { "method": "GET", "path": "/v1/images/x", "protocol": "HTTP/1.1",
                      "sourceIp": "192.0.2.1", "userAgent": "test" },
        });
        if !authorizer.is_null() {
            value["authorizer"] = authorizer;
        }
        RequestContext::ApiGatewayV2(
            serde_json::from_value::<ApiGatewayV2httpRequestContext>(value).unwrap(),
        )
    }

    #[test]
    fn only_a_verified_token_or_signature_authenticates() {
        assert_eq!(Caller::from_context(None), Caller::Anonymous);
        assert_eq!(
            Caller::from_context(Some(&context(serde_json::Value::Null))),
            Caller::Anonymous
        );
        assert_eq!(
            Caller::from_context(Some(&context(
                serde_json::json!({ "jwt": { "claims": {} } })
            ))),
            Caller::Anonymous,
            "a JWT authorizer without claims verified nothing"
        );
        let jwt = context(
            serde_json::json!({ "jwt": { "claims": { "sub": "user-7" }, "scopes": null } }),
        );
        assert_eq!(
            Caller::from_context(Some(&jwt)),
            Caller::Authenticated {
                subject: Some("user-7".into())
            }
        );
        let iam = context(
            serde_json::json!({ "iam": { "accessKey": "AKIA", "accountId": "1",
            "callerId": "c", "principalOrgId": null, "userArn": "arn:aws:iam::1:user/app", "userId": "u" } }),
        );
        assert!(Caller::from_context(Some(&iam)).is_authenticated());
    }
}
